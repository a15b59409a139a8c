import type { IncomingMessage } from 'node:http'
import { BearerToken } from '../bearer-token.ts'
import { ForbiddenError, UnauthorizedError } from '../errors.ts'
import { normalizeIp } from './client-ip.ts'

/** What {@link AdminAuth.check} accepts besides `Authorization: Bearer`. */
export interface AdminAuthCheckOptions {
  /**
   * Also accept HTTP Basic (RFC 7617) with the token as the password and any
   * user name. A browser cannot send a Bearer header when it navigates, but
   * it asks for Basic credentials on a challenge and then sends them with
   * every same-origin request below the page: the dashboard uses this.
   * @default false
   */
  basic?: boolean
}

/**
 * Guards the admin endpoints (DESIGN §5): with `ADMIN_TOKEN`, an
 * `Authorization: Bearer` header that matches it (or, where allowed, Basic
 * with it as the password); without, loopback clients only (the socket peer,
 * never X-Forwarded-For).
 */
export class AdminAuth {
  readonly #token: BearerToken | undefined

  constructor (token: string | undefined) {
    this.#token = token === undefined || token === '' ? undefined : new BearerToken(token)
  }

  /** True when a token is set (clients must authenticate), false when loopback is enough. */
  get requiresToken (): boolean {
    return this.#token !== undefined
  }

  /** @throws {UnauthorizedError | ForbiddenError} */
  check (req: IncomingMessage, options: AdminAuthCheckOptions = {}): void {
    if (this.#token === undefined) {
      if (!isLoopback(req.socket.remoteAddress)) throw new ForbiddenError()
      return
    }
    const authorization = req.headers.authorization
    if (this.#token.matches(authorization)) return
    if (options.basic === true && this.#token.matches(basicAsBearer(authorization))) return
    throw new UnauthorizedError()
  }
}

/** 127.0.0.0/8, ::1 and their IPv4-mapped forms. */
export function isLoopback (address: string | undefined): boolean {
  const a = address === undefined ? undefined : normalizeIp(address)
  return a === '::1' || a?.startsWith('127.') === true
}

/**
 * `Basic base64(user:password)` (RFC 7617 §2) as `Bearer password`, so that
 * the password goes through the one constant-time comparison of
 * {@link BearerToken}; undefined when the header is no Basic credential. A
 * password with white space never matches, as a Bearer token with it cannot.
 */
function basicAsBearer (authorization: string | undefined): string | undefined {
  const match = /^Basic[ \t]+([A-Za-z0-9+/]+=*)[ \t]*$/i.exec(authorization ?? '')
  if (match?.[1] === undefined) return undefined
  const decoded = Buffer.from(match[1], 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  return colon === -1 ? undefined : `Bearer ${decoded.slice(colon + 1)}`
}
