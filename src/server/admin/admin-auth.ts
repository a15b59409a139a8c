import type { IncomingMessage } from 'node:http'
import { BearerToken } from '../../bearer-token.ts'
import { ForbiddenError, UnauthorizedError } from '../../errors.ts'
import { normalizeIp } from '../../ip-address.ts'
import { peerOf } from '../access/peer.ts'

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
 * Who the admin endpoints answer: holders of `ADMIN_TOKEN`; without one,
 * loopback peers; or nobody, when a trusted proxy can be a loopback peer.
 */
export type AdminAccess = 'token' | 'loopback' | 'closed'

/** Refusal while {@link AdminAccess} is `closed`. */
const CLOSED_MESSAGE = 'admin endpoints are closed: TRUSTED_PROXIES covers loopback, so every client of a local proxy looks local; set ADMIN_TOKEN'

/**
 * Guards the admin endpoints (docs/endpoints.md#authentication): with `ADMIN_TOKEN`, an
 * `Authorization: Bearer` header that matches it (or, where allowed, Basic
 * with it as the password); without, loopback clients only (the socket peer,
 * never X-Forwarded-For) — unless a trusted proxy can itself be a loopback
 * peer. A reverse proxy on the same host connects from 127.0.0.1 for every
 * client it forwards, so "the peer is loopback" would then let the whole
 * internet in: every request is refused until a token is set.
 */
export class AdminAuth {
  readonly #token: BearerToken | undefined
  readonly #access: AdminAccess

  /**
   * @param token - `ADMIN_TOKEN`; empty counts as unset
   * @param loopbackProxied - `TRUSTED_PROXIES` covers a loopback address (`ClientIpResolver.coversLoopback`)
   */
  constructor (token: string | undefined, loopbackProxied = false) {
    this.#token = token === undefined || token === '' ? undefined : new BearerToken(token)
    this.#access = this.#token !== undefined ? 'token' : loopbackProxied ? 'closed' : 'loopback'
  }

  /** True when a token is set (clients must authenticate), false when loopback is enough. */
  get requiresToken (): boolean {
    return this.#token !== undefined
  }

  /** Who the admin endpoints answer. */
  get access (): AdminAccess {
    return this.#access
  }

  /** Whether {@link check} lets `req` in, without throwing (`/health` shows more to those). */
  allows (req: IncomingMessage): boolean {
    try {
      this.check(req)
      return true
    } catch {
      return false
    }
  }

  /** @throws {UnauthorizedError | ForbiddenError} */
  check (req: IncomingMessage, options: AdminAuthCheckOptions = {}): void {
    if (this.#token === undefined) {
      if (this.#access === 'closed') throw new ForbiddenError(CLOSED_MESSAGE)
      if (!isLoopback(peerOf(req))) throw new ForbiddenError()
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
