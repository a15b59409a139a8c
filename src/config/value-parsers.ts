import { isIP } from 'node:net'
import { z } from 'zod'
import { StoreUrlError } from '../errors.ts'
import { parseIpBlock } from '../ip-address.ts'
import { MAX_TIMER_SECONDS } from '../meter/index.ts'
import { parseStoreUrl } from '../store/index.ts'

// The parsers of setting values: each takes the string form of a value and
// returns what the schema (src/config/schema.ts) keeps, or an Invalid with
// the reason.

/**
 * What a parser returns for a bad value: the reason, phrased to follow
 * `NAME: `, and whether it already quotes the offending part (a list item),
 * so that the loader does not repeat the whole value.
 */
export class Invalid {
  readonly reason: string
  readonly quotes: boolean
  constructor (reason: string, quotes = false) {
    this.reason = reason
    this.quotes = quotes
  }
}

/** A setting read from its string form by `parse`. */
export function setting<T> (parse: (raw: string) => T | Invalid) {
  return z.string().transform((raw, ctx): T => {
    const value = parse(raw)
    if (value instanceof Invalid) {
      ctx.addIssue({ code: 'custom', message: value.reason, params: { quotes: value.quotes } })
      return z.NEVER
    }
    return value
  })
}

const DECIMAL = /^(?:\d+(?:\.\d*)?|\.\d+)$/
const DIGITS = /^\d+$/

/**
 * The largest bound a duration may have: Node's timers hold at most
 * 2^31 − 1 ms and fire after 1 ms when given more (a 3,000,000 s flush
 * interval ticked every millisecond), so no duration may exceed 2,147,483 s
 * whatever a setting's own bound.
 */
export const MAX_DURATION_SECONDS = MAX_TIMER_SECONDS

/**
 * Seconds: any positive decimal up to `max`, so that tests can run 1–2 s
 * windows while a slip of the keyboard cannot overflow a timer. Every
 * duration setting has its own `max`, documented in docs/configuration.md.
 * @param max - the bound in seconds, at most {@link MAX_DURATION_SECONDS}
 */
export function seconds (max: number) {
  if (!(max > 0 && max <= MAX_DURATION_SECONDS)) throw new RangeError(`a duration's bound must be in (0, ${MAX_DURATION_SECONDS}] s, got ${max}`)
  return setting((s) => {
    const n = DECIMAL.test(s) ? Number(s) : NaN
    if (n > max) return new Invalid(`must be at most ${max} seconds`)
    return n > 0 ? n : new Invalid(`must be a positive number of seconds (decimals allowed) up to ${max}, e.g. 1.5`)
  })
}

/**
 * A whole number from `min` to `max`; `what` describes it after "must be"
 * (`a positive integer`). Every size and count has a `max`, documented in
 * docs/configuration.md: what memory (or the protocol) allows.
 */
export function integer (min: number, max: number, what: string) {
  if (!(Number.isSafeInteger(min) && Number.isSafeInteger(max) && min <= max)) throw new RangeError(`bad integer bounds ${min}…${max}`)
  return setting((s) => {
    const n = DIGITS.test(s) ? Number(s) : NaN
    if (n > max) return new Invalid(`must be at most ${max} (${what})`)
    return n >= min ? n : new Invalid(`must be ${what}`)
  })
}

const BOOLEANS: Readonly<Record<string, boolean>> = { true: true, false: false, 1: true, 0: false, yes: true, no: false }
/** true/false, also 1/0 and yes/no, in any case. */
export const boolean = () => setting((s) => BOOLEANS[s.toLowerCase()] ?? new Invalid('must be true or false (also 1/0, yes/no)'))

/**
 * A secret as given (never trimmed: it must equal what the other side
 * holds). Secrets are single tokens (docs/limits.md): whitespace anywhere (a
 * space, tab, newline, no-break space) or a control character is refused,
 * since it is always a paste or quoting mistake (`KEY=abc def`, two values
 * run together) that would fail every check silently. The reason never
 * repeats the value.
 */
export const secret = () => setting((s) => {
  if (/\s/.test(s)) return new Invalid('must be a single token, without spaces or other whitespace')
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(s)) return new Invalid('must not contain control characters')
  return s
})

/** An absolute http(s) URL. The reason never repeats the value: a URL may carry credentials. */
export function httpUrl (s: string, base: boolean): string | Invalid {
  let url: URL
  try {
    url = new URL(s)
  } catch {
    return new Invalid('must be an absolute http:// or https:// URL')
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return new Invalid('must be an absolute http:// or https:// URL')
  if (base && (url.search !== '' || url.hash !== '')) return new Invalid('must be a base URL without a query or fragment')
  return s
}

/**
 * A `Host` field value (RFC 9110 §7.2): a host name, an IPv4 address or a
 * bracketed IPv6 address, and an optional port. Nothing else may reach a
 * request header (no spaces, no line breaks).
 */
export function hostHeader (s: string): string | Invalid {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::(\d{1,5}))?$/.exec(s)
  const bad = new Invalid('must be a host name or address with an optional port, e.g. media.example.com or media.example.com:8080')
  if (m === null) return bad
  const host = m[1] as string
  if (host.startsWith('[') && isIP(host.slice(1, -1)) !== 6) return bad
  if (m[2] !== undefined && Number(m[2]) > 65535) return bad
  return s
}

/** A `STORE_URL` that parseStoreUrl accepts (src/store/index.ts). */
export function storeUrl (s: string): string | Invalid {
  // A redis URL (plain, Sentinel or Cluster) is checked for shape here; the
  // connection is the store's business. No message repeats the URL, which
  // may hold a password.
  try {
    parseStoreUrl(s)
  } catch (err) {
    // parseStoreUrl's messages never repeat a URL past its scheme.
    if (err instanceof StoreUrlError) return new Invalid(err.message.replace(/^STORE_URL: /, ''))
    throw err
  }
  return s
}

/** An address (`10.0.0.1`, `::1`) or a CIDR (`10.0.0.0/8`, `fd00::/8`): the parser the client-IP resolver applies it with. */
export function proxyEntry (s: string): string | Invalid {
  return parseIpBlock(s)?.text ?? new Invalid(`"${s}" is not an IP address or CIDR, e.g. 10.0.0.0/8, 192.0.2.7 or fd00::/8`, true)
}

/**
 * A host name or IP literal with an optional port, as a `Host` header or the
 * authority of a URL spells it (`media.example.com`, `media.example.com:8443`,
 * `[2001:db8::1]:8080`), lower-cased.
 */
export function publicHost (s: string): string | Invalid {
  const bad = new Invalid(`"${s}" is not a host[:port], e.g. media.example.com or media.example.com:8443`, true)
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)(?::([0-9]{1,5}))?$/.exec(s)
  if (m === null) return bad
  const [, host = '', port] = m
  if (host.startsWith('[') && isIP(host.slice(1, -1)) !== 6) return bad
  if (port !== undefined && Number(port) > 65535) return bad
  return s.toLowerCase()
}

/** A comma-separated list; blank items are skipped. */
export function list<T> (s: string, item: (s: string) => T | Invalid): T[] | Invalid {
  const out: T[] = []
  for (const part of s.split(',')) {
    const trimmed = part.trim()
    if (trimmed === '') continue
    const value = item(trimmed)
    if (value instanceof Invalid) return value
    out.push(value)
  }
  return out
}

/** A file extension as `ACCESS_OPEN_EXTENSIONS` lists it (`.ts` or `ts`): lower-case, without the dot. */
export function fileExtension (s: string): string | Invalid {
  return /^\.?[A-Za-z0-9]{1,16}$/.test(s) ? s.replace(/^\./, '').toLowerCase() : new Invalid(`"${s}" is not a file extension such as .ts or .m4s`, true)
}

/** A CORS origin: `*`, or `scheme://host[:port]` (normalised by URL). */
export function corsOrigin (s: string): string | Invalid {
  if (s === '*') return s
  const url = URL.canParse(s) ? new URL(s) : undefined
  // An Origin header is scheme://host[:port]; a path, query or credentials
  // here is a mistake that would silently match nothing.
  const isOrigin = url !== undefined && (url.protocol === 'http:' || url.protocol === 'https:') &&
    url.pathname === '/' && !/^[a-z][a-z0-9+.-]*:\/\/[^/]*\/./i.test(s) && url.search === '' && url.hash === '' &&
    url.username === '' && url.password === ''
  if (!isOrigin) return new Invalid(`"${s}" is not an origin (scheme://host[:port], no path), e.g. https://player.example.com`, true)
  return url.origin
}
