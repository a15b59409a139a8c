import { createHash, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { ForbiddenError, UnauthorizedError } from '../errors.ts'

/**
 * Guards the admin endpoints (DESIGN §5): with `ADMIN_TOKEN`, an
 * `Authorization: Bearer` header that matches it; without, loopback clients
 * only (the socket peer, never X-Forwarded-For).
 */
export class AdminAuth {
  readonly #digest: Buffer | undefined

  constructor (token: string | undefined) {
    this.#digest = token === undefined || token === '' ? undefined : sha256(token)
  }

  /** @throws {UnauthorizedError | ForbiddenError} */
  check (req: IncomingMessage): void {
    if (this.#digest === undefined) {
      if (!isLoopback(req.socket.remoteAddress)) throw new ForbiddenError()
      return
    }
    const header = req.headers.authorization ?? ''
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header)
    // Compare digests: equal length whatever was sent, and timingSafeEqual
    // makes the comparison constant-time.
    if (match === null || !timingSafeEqual(sha256(match[1] as string), this.#digest)) throw new UnauthorizedError()
  }
}

function sha256 (s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest()
}

/** 127.0.0.0/8, ::1 and their IPv4-mapped forms. */
export function isLoopback (address: string | undefined): boolean {
  if (address === undefined) return false
  const a = address.startsWith('::ffff:') ? address.slice(7) : address
  return a === '::1' || a.startsWith('127.')
}
