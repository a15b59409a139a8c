import { createHash, timingSafeEqual } from 'node:crypto'

/**
 * A secret checked against `Authorization: Bearer <token>` in constant time
 * (the admin endpoints' `ADMIN_TOKEN`, the sink's API key). Digests are
 * compared, so the lengths are equal whatever was sent, as `timingSafeEqual`
 * requires, and the time taken does not depend on where the values differ.
 */
export class BearerToken {
  readonly #digest: Buffer

  constructor (secret: string) {
    this.#digest = sha256(secret)
  }

  /** True when `authorization` is `Bearer <the secret>` (scheme case-insensitive). */
  matches (authorization: string | undefined): boolean {
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? '')
    return match?.[1] !== undefined && timingSafeEqual(sha256(match[1]), this.#digest)
  }

  /**
   * True when `authorization` is `Bearer <the secret>` or the bare secret
   * (how the Python proxy's clients send its API key).
   */
  matchesBearerOrBare (authorization: string | undefined): boolean {
    if (authorization === undefined) return false
    const bare = authorization.trim()
    return this.matches(authorization) || (bare !== '' && timingSafeEqual(sha256(bare), this.#digest))
  }
}

function sha256 (s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest()
}
