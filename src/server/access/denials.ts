/**
 * Refused media requests, by reason (docs/access.md#denials): counted in
 * `/metrics` and kept, the most recent ones only, for `/monitor` and
 * `GET /api/access-log/denied`. An entry holds no token, no query string
 * and no uid: the reason, the status, the decoded path and the client IP.
 */

/** Why the access check refused a request. */
export type DenialReason =
  /** No signature, or one that does not verify (403); also an unsigned uid where only signed URLs count. */
  | 'bad_signature'
  /** A signature that verifies, bound to a client block the client is not in (403). */
  | 'ip_mismatch'
  /** A signature that verifies, past its `expires` (410). */
  | 'expired'
  /** A uid longer than 256 characters (400). */
  | 'uid_too_long'
  /** A `uid` parameter other than the uid of the session or grant that would let the request in (403). */
  | 'uid_mismatch'
  /** A session, grant or use limit had to be asked of a store that did not answer (503). */
  | 'store_unavailable'
  /** A signed URL used more often than its use limit allows (403). */
  | 'use_limit'

export const DENIAL_REASONS: readonly DenialReason[] = ['bad_signature', 'ip_mismatch', 'expired', 'uid_too_long', 'uid_mismatch', 'store_unavailable', 'use_limit']

/** One refused request. */
export interface DeniedRequest {
  /** ISO 8601, ms. */
  time: string
  reason: DenialReason
  status: number
  /** The decoded path, with its leading `/`, without the query. */
  path: string
  /** The client IP (`TRUSTED_PROXIES` applied). */
  ip: string
}

/** One denial as an engine reports it: `path` decoded with its leading `/`, `time` in ms since the epoch. */
export interface DenialEvent {
  reason: DenialReason
  status: number
  path: string
  ip: string
  time: number
}

/** Entries kept unless said otherwise. */
export const DENIED_LOG_SIZE = 200
/** Longest path an entry keeps (the rest is cut, with `…`). */
const MAX_PATH = 256

/** The recent denials (a ring of `size` entries) and the counts by reason since start. */
export class DeniedLog {
  readonly #size: number
  readonly #entries: DeniedRequest[] = []
  #next = 0
  readonly #counts = new Map<DenialReason, number>()
  readonly #onDenial: ((reason: DenialReason) => void) | undefined

  /** @param onDenial - told of each denial (the `/metrics` counter) */
  constructor (options: { size?: number | undefined, onDenial?: ((reason: DenialReason) => void) | undefined } = {}) {
    this.#size = Math.max(1, options.size ?? DENIED_LOG_SIZE)
    this.#onDenial = options.onDenial
  }

  /** Keep one denial. */
  add (d: DenialEvent): void {
    const path = d.path.length > MAX_PATH ? `${d.path.slice(0, MAX_PATH)}…` : d.path
    const entry: DeniedRequest = { time: new Date(d.time).toISOString(), reason: d.reason, status: d.status, path, ip: d.ip }
    if (this.#entries.length < this.#size) this.#entries.push(entry)
    else this.#entries[this.#next] = entry
    this.#next = (this.#next + 1) % this.#size
    this.#counts.set(d.reason, (this.#counts.get(d.reason) ?? 0) + 1)
    this.#onDenial?.(d.reason)
  }

  /** The kept denials, newest first, at most `limit`. */
  recent (limit = this.#size): DeniedRequest[] {
    const n = this.#entries.length
    const out: DeniedRequest[] = []
    for (let i = 1; i <= Math.min(limit, n); i++) out.push(this.#entries[(this.#next - i + n) % n] as DeniedRequest)
    return out
  }

  /** Denials since start, by reason (every reason, 0 included). */
  counts (): Record<DenialReason, number> {
    return Object.fromEntries(DENIAL_REASONS.map((r) => [r, this.#counts.get(r) ?? 0])) as Record<DenialReason, number>
  }

  /** How many entries are kept at most. */
  get capacity (): number {
    return this.#size
  }
}
