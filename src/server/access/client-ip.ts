import { ConfigError } from '../../errors.ts'
import { IpBlockList, normalizeIp } from '../../ip-address.ts'

/**
 * The client address a request is metered under (docs/access.md#identity): the socket peer,
 * unless the peer is one of `TRUSTED_PROXIES`; then the right-most
 * `X-Forwarded-For` entry that is not a trusted proxy.
 *
 * Why the right-most: every proxy appends the address it received the request
 * from, so an entry was written by the hop whose address stands to its right
 * (the last one by the peer). Entries are only as trustworthy as their writer:
 * walking from the right, the first untrusted address was still written by a
 * trusted proxy, and everything to its left was written by the client or
 * somebody it talked to, so it may be forged (RFC 7239 §8.1 on the same
 * problem with `Forwarded`).
 */

/** Resolves the client address of a request; see the module comment. */
export class ClientIpResolver {
  readonly #trusted: IpBlockList

  /**
   * @param trustedProxies - `TRUSTED_PROXIES`: addresses and CIDR blocks, IPv4 or IPv6, as a
   *   list or one comma-separated string. Empty entries are skipped.
   * @default [] (no proxy is trusted: the socket peer is always the client)
   * @throws {ConfigError} `SM_ERR_CONFIG` naming `TRUSTED_PROXIES` for an entry that is neither
   */
  constructor (trustedProxies: string | Iterable<string> = []) {
    const entries = typeof trustedProxies === 'string' ? trustedProxies.split(',') : trustedProxies
    this.#trusted = new IpBlockList(entries, (entry) => new ConfigError('TRUSTED_PROXIES', `"${entry}" is not an IP address or CIDR block`))
  }

  /** Number of addresses and blocks trusted. */
  get size (): number {
    return this.#trusted.size
  }

  /**
   * Whether some loopback address (127.0.0.0/8, `::1`, their IPv4-mapped
   * forms) is a trusted proxy: then a request from a loopback peer may carry
   * any client's address, and the peer says nothing about who is asking.
   * Exact because CIDR blocks are nested or disjoint: a block that meets
   * 127.0.0.0/8 either holds all of it (so 127.0.0.1) or lies inside it.
   */
  get coversLoopback (): boolean {
    return this.#trusted.insideLoopback || this.#trusted.has('127.0.0.1') || this.#trusted.has('::1')
  }

  /** Whether `ip` (any spelling {@link normalizeIp} accepts) is a trusted proxy. */
  isTrusted (ip: string): boolean {
    const n = normalizeIp(ip)
    return n !== undefined && this.#trusted.has(n)
  }

  /**
   * The client address, normalised.
   * @param peer - the socket's remote address
   * @param xForwardedFor - the `X-Forwarded-For` header (Node joins repeated ones with `, `;
   *   an array is read as the headers in order)
   */
  resolve (peer: string, xForwardedFor: string | readonly string[] | undefined): string {
    const p = normalizeIp(peer) ?? peer
    if (this.#trusted.size === 0 || xForwardedFor === undefined || !this.#trusted.has(p)) return p
    const entries = (typeof xForwardedFor === 'string' ? xForwardedFor : xForwardedFor.join(',')).split(',')
    let client = p
    for (let i = entries.length - 1; i >= 0; i--) {
      const raw = entries[i]!
      // Empty list elements are ignored (RFC 9110 §5.6.1).
      if (raw.trim() === '') continue
      const ip = normalizeIp(raw)
      // An entry that is no address (`unknown`, a host name, garbage) ends the
      // walk instead of being skipped: everything to its left was written by
      // whoever that hop was, which we cannot tell is a trusted proxy. Skipping
      // it would let a client put any address there and be billed as it. The
      // answer is then the last address we could vouch for: the nearest
      // trusted hop, as when every entry is trusted.
      if (ip === undefined) break
      client = ip
      if (!this.#trusted.has(ip)) break
    }
    return client
  }
}
