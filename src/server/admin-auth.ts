import type { IncomingMessage } from 'node:http'
import { BearerToken } from '../bearer-token.ts'
import { ForbiddenError, UnauthorizedError } from '../errors.ts'
import { normalizeIp } from './client-ip.ts'

/**
 * Guards the admin endpoints (DESIGN §5): with `ADMIN_TOKEN`, an
 * `Authorization: Bearer` header that matches it; without, loopback clients
 * only (the socket peer, never X-Forwarded-For).
 */
export class AdminAuth {
  readonly #token: BearerToken | undefined

  constructor (token: string | undefined) {
    this.#token = token === undefined || token === '' ? undefined : new BearerToken(token)
  }

  /** @throws {UnauthorizedError | ForbiddenError} */
  check (req: IncomingMessage): void {
    if (this.#token === undefined) {
      if (!isLoopback(req.socket.remoteAddress)) throw new ForbiddenError()
      return
    }
    if (!this.#token.matches(req.headers.authorization)) throw new UnauthorizedError()
  }
}

/** 127.0.0.0/8, ::1 and their IPv4-mapped forms. */
export function isLoopback (address: string | undefined): boolean {
  const a = address === undefined ? undefined : normalizeIp(address)
  return a === '::1' || a?.startsWith('127.') === true
}
