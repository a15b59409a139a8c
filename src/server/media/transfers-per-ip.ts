/**
 * Concurrent media requests per client IP (`MAX_TRANSFERS_PER_IP`,
 * docs/limits.md#requests): one Map entry per address with requests in
 * flight, removed at zero, so memory follows the clients connected now, not
 * every address ever seen.
 * The IP is the one metering uses (the socket peer, or the client a trusted
 * proxy names in `X-Forwarded-For`), so one address behind a proxy cannot
 * take the whole server.
 */
export class TransfersPerIp {
  /** Most requests in flight per address. */
  readonly limit: number
  readonly #inFlight = new Map<string, number>()

  /** @param limit - `MAX_TRANSFERS_PER_IP`, at least 1 */
  constructor (limit: number) {
    this.limit = limit
  }

  /** Count one more request from `ip`; false (and nothing counted) when it already has `limit`. */
  acquire (ip: string): boolean {
    const n = this.#inFlight.get(ip) ?? 0
    if (n >= this.limit) return false
    this.#inFlight.set(ip, n + 1)
    return true
  }

  /** One request from `ip` ended (only after an {@link acquire} that answered true). */
  release (ip: string): void {
    const n = this.#inFlight.get(ip) ?? 0
    if (n <= 1) this.#inFlight.delete(ip)
    else this.#inFlight.set(ip, n - 1)
  }

  /** Addresses with requests in flight. */
  get addresses (): number {
    return this.#inFlight.size
  }

  /** Requests in flight from `ip`. */
  inFlight (ip: string): number {
    return this.#inFlight.get(ip) ?? 0
  }
}
