import { BlockList, isIP } from 'node:net'
import { ConfigError } from '../../errors.ts'

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

const PORT = /^:[0-9]{1,5}$/

/**
 * A textual IP address in canonical form, or undefined when it is none:
 * IPv4 dotted decimal; IPv6 lower-case and compressed as RFC 5952 §4
 * prescribes; an IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, how a dual-stack
 * socket reports an IPv4 peer) as the IPv4 address it maps. Accepts the
 * decorations proxies put around addresses in `X-Forwarded-For` and which do
 * not identify the client: surrounding spaces, brackets, a port
 * (`[2001:db8::1]:443`, `1.2.3.4:5678`) and an IPv6 zone id (`fe80::1%eth0`,
 * RFC 4007 §11; `%25` in URI form, RFC 6874). Host names, `unknown` and RFC
 * 7239 obfuscated identifiers (`_hidden`) are not addresses: undefined.
 */
export function normalizeIp (input: string): string | undefined {
  let s = input.trim()
  if (s.startsWith('[')) {
    const end = s.indexOf(']')
    if (end === -1) return undefined
    const rest = s.slice(end + 1)
    if (rest !== '' && !PORT.test(rest)) return undefined
    s = s.slice(1, end)
  } else {
    const colon = s.indexOf(':')
    // Exactly one colon: IPv4 with a port (an IPv6 address has at least two).
    if (colon !== -1 && colon === s.lastIndexOf(':')) {
      if (!PORT.test(s.slice(colon))) return undefined
      s = s.slice(0, colon)
    }
  }
  const zone = s.indexOf('%')
  if (zone !== -1 && s.includes(':')) s = s.slice(0, zone)
  return canonicalIp(s)
}

/** Resolves the client address of a request; see the module comment. */
export class ClientIpResolver {
  #trusted = new BlockList()
  #count = 0
  /** Some entry lies inside 127.0.0.0/8 (or its IPv4-mapped form) without holding 127.0.0.1. */
  #insideLoopback = false

  /**
   * @param trustedProxies - `TRUSTED_PROXIES`: addresses and CIDR blocks, IPv4 or IPv6, as a
   *   list or one comma-separated string. Empty entries are skipped.
   * @default [] (no proxy is trusted: the socket peer is always the client)
   * @throws {ConfigError} `SM_ERR_CONFIG` naming `TRUSTED_PROXIES` for an entry that is neither
   */
  constructor (trustedProxies: string | Iterable<string> = []) {
    const entries = typeof trustedProxies === 'string' ? trustedProxies.split(',') : trustedProxies
    for (const raw of entries) {
      const entry = raw.trim()
      if (entry !== '') this.#add(entry)
    }
  }

  /** Number of addresses and blocks trusted. */
  get size (): number {
    return this.#count
  }

  /**
   * Whether some loopback address (127.0.0.0/8, `::1`, their IPv4-mapped
   * forms) is a trusted proxy: then a request from a loopback peer may carry
   * any client's address, and the peer says nothing about who is asking.
   * Exact because CIDR blocks are nested or disjoint: a block that meets
   * 127.0.0.0/8 either holds all of it (so 127.0.0.1) or lies inside it.
   */
  get coversLoopback (): boolean {
    return this.#insideLoopback || this.#check('127.0.0.1') || this.#check('::1')
  }

  /** Whether `ip` (any spelling {@link normalizeIp} accepts) is a trusted proxy. */
  isTrusted (ip: string): boolean {
    const n = normalizeIp(ip)
    return n !== undefined && this.#check(n)
  }

  /**
   * The client address, normalised.
   * @param peer - the socket's remote address
   * @param xForwardedFor - the `X-Forwarded-For` header (Node joins repeated ones with `, `;
   *   an array is read as the headers in order)
   */
  resolve (peer: string, xForwardedFor: string | readonly string[] | undefined): string {
    const p = normalizeIp(peer) ?? peer
    if (this.#count === 0 || xForwardedFor === undefined || !this.#check(p)) return p
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
      if (!this.#check(ip)) break
    }
    return client
  }

  #check (ip: string): boolean {
    const family = isIP(ip)
    return family !== 0 && this.#trusted.check(ip, family === 4 ? 'ipv4' : 'ipv6')
  }

  #add (entry: string): void {
    const bad = (): ConfigError => new ConfigError('TRUSTED_PROXIES', `"${entry}" is not an IP address or CIDR block`)
    const slash = entry.indexOf('/')
    const address = slash === -1 ? entry : entry.slice(0, slash)
    const family = isIP(address)
    const canonical = canonicalIp(address)
    if (family === 0 || canonical === undefined) throw bad()
    const mapped = family === 6 && isIP(canonical) === 4
    if ((family === 4 || mapped) && canonical.startsWith('127.')) this.#insideLoopback = true
    if (slash === -1) {
      this.#trusted.addAddress(canonical, mapped ? 'ipv4' : (family === 4 ? 'ipv4' : 'ipv6'))
    } else {
      const bits = entry.slice(slash + 1)
      const prefix = /^[0-9]{1,3}$/.test(bits) ? Number(bits) : NaN
      if (!(prefix <= (family === 4 ? 32 : 128))) throw bad()
      // Peers are compared in their IPv4 form when mapped, so a mapped block
      // (`::ffff:10.0.0.0/104`) is kept as the IPv4 block it covers.
      if (mapped && prefix >= 96) this.#trusted.addSubnet(canonical, prefix - 96, 'ipv4')
      else this.#trusted.addSubnet(family === 4 ? canonical : address, prefix, family === 4 ? 'ipv4' : 'ipv6')
    }
    this.#count++
  }
}

/** `s` (no brackets, port or zone) in canonical form, or undefined when it is no IP address. */
function canonicalIp (s: string): string | undefined {
  const family = isIP(s)
  if (family === 4) return s // inet_pton already refuses leading zeros and short forms
  if (family !== 6 || s.includes('%')) return undefined
  const g = ipv6Groups(s)
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) {
    const hi = g[6]!
    const lo = g[7]!
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`
  }
  // RFC 5952 §4.2: compress the longest run of two or more zero groups, the
  // first one on a tie; §4.1 no leading zeros; §4.3 lower case.
  let bestAt = -1
  let bestLen = 1
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) { i++; continue }
    let j = i
    while (j < 8 && g[j] === 0) j++
    if (j - i > bestLen) { bestAt = i; bestLen = j - i }
    i = j
  }
  const hex = g.map((x) => x.toString(16))
  if (bestAt === -1) return hex.join(':')
  return `${hex.slice(0, bestAt).join(':')}::${hex.slice(bestAt + bestLen).join(':')}`
}

/** The eight 16-bit groups of a valid IPv6 address. */
function ipv6Groups (s: string): number[] {
  let text = s.toLowerCase()
  if (text.includes('.')) {
    // Trailing dotted IPv4 (RFC 4291 §2.2 form 3) as its two hex groups.
    const at = text.lastIndexOf(':') + 1
    const [a, b, c, d] = text.slice(at).split('.').map(Number) as [number, number, number, number]
    text = `${text.slice(0, at)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const groups = (part: string): number[] => part === '' ? [] : part.split(':').map((h) => parseInt(h, 16))
  const gap = text.indexOf('::')
  if (gap === -1) return groups(text)
  const head = groups(text.slice(0, gap))
  const tail = groups(text.slice(gap + 2))
  return [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail]
}
