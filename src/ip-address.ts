import { BlockList, isIP } from 'node:net'

/**
 * IP addresses and blocks as `TRUSTED_PROXIES`, `ACCESS_ALLOW_CIDRS`,
 * `X-Forwarded-For` and sockets spell them: one parser for the settings'
 * validation (config/value-parsers.ts) and for the code that applies them
 * (server/access/).
 */

/** One `TRUSTED_PROXIES` entry, ready for a `BlockList`. */
export interface IpBlock {
  /** The entry as written, trimmed, its prefix as a plain number (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`). */
  text: string
  /** The address in the form a `BlockList` compares peers in (an IPv4-mapped block as IPv4). */
  address: string
  /** Prefix length for a block; undefined for one address. */
  prefix: number | undefined
  type: 'ipv4' | 'ipv6'
  /** The entry lies inside 127.0.0.0/8 (or its IPv4-mapped form). */
  insideLoopback: boolean
}

/** An address or CIDR block (`10.0.0.0/8`, `::ffff:10.0.0.0/104`, `fd00::/8`, `192.0.2.7`), or undefined when it is neither. */
export function parseIpBlock (input: string): IpBlock | undefined {
  const entry = input.trim()
  const slash = entry.indexOf('/')
  const address = slash === -1 ? entry : entry.slice(0, slash)
  const family = isIP(address)
  const canonical = canonicalIp(address)
  if (family === 0 || canonical === undefined) return undefined
  const mapped = family === 6 && isIP(canonical) === 4
  const insideLoopback = (family === 4 || mapped) && canonical.startsWith('127.')
  if (slash === -1) return { text: address, address: canonical, prefix: undefined, type: mapped || family === 4 ? 'ipv4' : 'ipv6', insideLoopback }
  const bits = entry.slice(slash + 1)
  const prefix = /^[0-9]{1,3}$/.test(bits) ? Number(bits) : NaN
  if (!(prefix <= (family === 4 ? 32 : 128))) return undefined
  const text = `${address}/${prefix}`
  // Peers are compared in their IPv4 form when mapped, so a mapped block
  // (`::ffff:10.0.0.0/104`) is kept as the IPv4 block it covers.
  if (mapped && prefix >= 96) return { text, address: canonical, prefix: prefix - 96, type: 'ipv4', insideLoopback }
  return { text, address: family === 4 ? canonical : address, prefix, type: family === 4 ? 'ipv4' : 'ipv6', insideLoopback }
}

/** Addresses whose answer an {@link IpBlockList} keeps (then it starts afresh): about 0.5 MB at most. */
const ANSWERS_KEPT = 4096

/**
 * A set of addresses and CIDR blocks, IPv4 and IPv6 (`TRUSTED_PROXIES`,
 * `ACCESS_ALLOW_CIDRS`). An address is matched against the blocks of its
 * own family only, as nginx's realip and geo modules match: Node's
 * `BlockList` alone would put every IPv4 address in `::/0` (it compares an
 * IPv4 address as its IPv4-mapped form), and the engines would disagree.
 */
export class IpBlockList {
  readonly #v4 = new BlockList()
  readonly #v6 = new BlockList()
  #size = 0
  /** Some entry lies inside 127.0.0.0/8 (or its IPv4-mapped form). */
  #insideLoopback = false
  /** Answers of {@link has} by address, at most {@link ANSWERS_KEPT}. */
  readonly #answers = new Map<string, boolean>()

  /**
   * @param entries - addresses and blocks as {@link parseIpBlock} reads them; empty ones are skipped
   * @param bad - the error for an entry that is neither
   */
  constructor (entries: Iterable<string>, bad: (entry: string) => Error) {
    for (const raw of entries) {
      const entry = raw.trim()
      if (entry === '') continue
      const block = parseIpBlock(entry)
      if (block === undefined) throw bad(entry)
      this.#add(block)
    }
  }

  /** A list of blocks already parsed. */
  static of (blocks: Iterable<IpBlock>): IpBlockList {
    const list = new IpBlockList([], () => new TypeError('no entries'))
    for (const block of blocks) list.#add(block)
    return list
  }

  /** Number of addresses and blocks. */
  get size (): number {
    return this.#size
  }

  /** Some entry lies inside 127.0.0.0/8 without necessarily holding 127.0.0.1. */
  get insideLoopback (): boolean {
    return this.#insideLoopback
  }

  /**
   * Whether `ip`, already canonical ({@link normalizeIp}: an IPv4-mapped address as IPv4), is in the list.
   * Asked for every request (the client's address against `TRUSTED_PROXIES` and
   * `ACCESS_ALLOW_CIDRS`), and `BlockList.check` builds a `SocketAddress` each
   * time (about 1.7 µs): an empty list answers at once, and the answers for the
   * last addresses asked are kept ({@link ANSWERS_KEPT}; the list never changes).
   */
  has (ip: string): boolean {
    if (this.#size === 0) return false
    let answer = this.#answers.get(ip)
    if (answer === undefined) {
      const family = isIP(ip)
      answer = family === 4 ? this.#v4.check(ip, 'ipv4') : family === 6 && this.#v6.check(ip, 'ipv6')
      if (this.#answers.size >= ANSWERS_KEPT) this.#answers.clear()
      this.#answers.set(ip, answer)
    }
    return answer
  }

  #add (block: IpBlock): void {
    if (block.insideLoopback) this.#insideLoopback = true
    const list = block.type === 'ipv4' ? this.#v4 : this.#v6
    if (block.prefix === undefined) list.addAddress(block.address, block.type)
    else list.addSubnet(block.address, block.prefix, block.type)
    this.#size++
  }
}

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

/**
 * The network a session or grant binds a client to (docs/access.md#sessions):
 * its IPv4 /24 (`203.0.113.0/24`) or IPv6 /64 (`2001:db8:1:2::/64`), from an
 * address in canonical form ({@link normalizeIp}); undefined for anything else.
 * A client whose address changes inside its network (a phone's privacy
 * address, a NAT pool) keeps its session.
 */
export function networkOf (ip: string): string | undefined {
  const family = isIP(ip)
  if (family === 4) return `${ip.slice(0, ip.lastIndexOf('.'))}.0/24`
  if (family !== 6) return undefined
  const g = ipv6Groups(ip)
  return `${canonicalIp(`${g.slice(0, 4).map((x) => x.toString(16)).join(':')}::`) as string}/64`
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
