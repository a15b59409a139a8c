import { createHash, createHmac, timingSafeEqual } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import { firstValue } from '../header-value.ts'
import { SESSION_COOKIE, SESSION_HEADER, cookieValue } from './session-id.ts'

/**
 * Session ids and the cookie that carries them (docs/access.md#sessions).
 *
 * An id is 32 base64url characters: 12 bytes derived from what the session
 * is bound to (uid, network, agent, directory) and 12 bytes of MAC over
 * those, both keyed by the server's key. So
 * - the same client asking again for the same uid and directory gets the
 *   same session, however many requests it makes without the cookie (a
 *   player without a cookie jar, a benchmark): one session, not one per
 *   request;
 * - an id nobody issued is refused by its MAC before the store is asked,
 *   so random ids cost no store round-trip;
 * - nobody can make an id without the key.
 */

const ID_BYTES = 12
/** Ids {@link SessionIds} remembers; past it, it starts afresh. */
const MADE_KEPT = 50_000
/** Length of a session id: two 12-byte halves in base64url. */
export const SESSION_ID_LENGTH = 32

/** What a session is bound to, as the id is derived from it. */
export interface SessionBinding {
  uid: string
  network: string
  agent: string
  directory: string
}

/** Makes and checks session ids with one key. */
export class SessionIds {
  readonly #key: Buffer
  /** Ids made lately, by binding: a player's every request would otherwise cost two HMACs. */
  readonly #made = new Map<string, string>()

  /** @param secret - `SIGNING_SECRET`, else `ACCESS_API_KEY`: the id key is derived from it */
  constructor (secret: string) {
    this.#key = createHmac('sha256', secret).update('streammeter-session-key-v1').digest()
  }

  /** The id of the session bound to `b`: the same for the same binding. */
  idOf (b: SessionBinding): string {
    const binding = `bind\n${b.uid}\n${b.network}\n${b.agent}\n${b.directory}`
    let id = this.#made.get(binding)
    if (id !== undefined) return id
    const nonce = createHmac('sha256', this.#key).update(binding).digest().subarray(0, ID_BYTES)
    id = Buffer.concat([nonce, this.#tag(nonce)]).toString('base64url')
    if (this.#made.size >= MADE_KEPT) this.#made.clear()
    this.#made.set(binding, id)
    return id
  }

  /** Whether `id` is one this key issued (its MAC holds), in constant time. */
  issued (id: string): boolean {
    if (id.length !== SESSION_ID_LENGTH) return false
    const raw = Buffer.from(id, 'base64url')
    if (raw.length !== 2 * ID_BYTES || raw.toString('base64url') !== id) return false
    return timingSafeEqual(raw.subarray(ID_BYTES), this.#tag(raw.subarray(0, ID_BYTES)))
  }

  #tag (nonce: Buffer): Buffer {
    return createHmac('sha256', this.#key).update('id\n').update(nonce).digest().subarray(0, ID_BYTES)
  }
}

/** Hashes of User-Agents, the last few remembered: players send the same one on every request. */
export class AgentHashes {
  readonly #known = new Map<string, string>()

  /** The hash a session or grant stores for `userAgent` (none: the empty string's). */
  of (userAgent: string | undefined): string {
    const ua = userAgent ?? ''
    let hash = this.#known.get(ua)
    if (hash !== undefined) return hash
    hash = createHash('sha256').update(ua).digest('base64url').slice(0, 22)
    if (this.#known.size >= 1024) this.#known.clear()
    this.#known.set(ua, hash)
    return hash
  }
}

/**
 * The session id a request presents for access: the `X-Session-ID` header,
 * else the `session_id_fileserver` cookie; only one shaped like an id
 * (the `sid` parameter is a reporting label, never an access carrier).
 */
export function presentedSession (headers: IncomingHttpHeaders): string | undefined {
  const header = firstValue(headers[SESSION_HEADER])?.trim()
  if (header !== undefined && header.length === SESSION_ID_LENGTH) return header
  const cookie = cookieValue(headers.cookie, SESSION_COOKIE)?.trim()
  return cookie !== undefined && cookie.length === SESSION_ID_LENGTH ? cookie : undefined
}

/**
 * The `Set-Cookie` value for session `id`: HttpOnly, SameSite=Lax, Path=/,
 * Max-Age of `ttl` seconds (sent again with every answer it lets in, so the
 * expiry slides), Secure when the client reached us over https.
 */
export function sessionCookie (id: string, ttl: number, secure: boolean): string {
  return `${SESSION_COOKIE}=${id}; Max-Age=${Math.floor(ttl)}; Path=/; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`
}
