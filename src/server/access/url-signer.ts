import { createHmac, timingSafeEqual } from 'node:crypto'
import { isIP } from 'node:net'
import { IpBlockList, normalizeIp, parseIpBlock } from '../../ip-address.ts'
import type { IpBlock } from '../../ip-address.ts'

/**
 * Signed media URLs (docs/access.md#signed-urls). Two token kinds, one secret:
 *
 * **Plain** (the contract with existing issuers, unchanged):
 * `?uid=U&expires=E&token=T`, `T = HMAC-SHA256(secret, "U:P:E")`, `P` the
 * URL-decoded request path without its leading slash, `E` unix seconds.
 *
 * **Scoped**: `?uid=U&expires=E&scope=S&token=T`, `S` a directory written
 * with leading and trailing slashes (`/t/`; `/` is the whole origin), and
 * `T = HMAC-SHA256(secret, M)` over the message
 *
 *     streammeter-token-v2 LF uid=U LF scope=S LF path=P LF expires=E
 *
 * (LF a line feed, no trailing one). The `path=P` line is there when the
 * token is bound to one path (the proxy gives those to child playlists it
 * rewrites, so that the scope travels down to them, docs/access.md), and
 * absent for a token valid for every path under `S` (`streammeter sign
 * --scope`). Either way the request's path must lie under `S`.
 *
 * **IP-bound** (either kind may be): `&ip=C` in the query, `C` an IPv4 or
 * IPv6 address or CIDR block (not an IPv4-mapped one), and an `ip=C` line
 * before `expires` in the scoped message; without a scope the message has
 * no `scope=` line and must have the `path=` line:
 *
 *     streammeter-token-v2 LF uid=U [LF scope=S] [LF path=P] [LF ip=C] LF expires=E
 *
 * The token then opens nothing for a client outside `C` (403).
 *
 * `T` is lowercase hex or unpadded base64url.
 *
 * Why no message of one kind can be another's (so no token of one kind
 * opens anything as the other): `U` and `P` never contain a control
 * character (LF included) — requests with one are refused before any check,
 * {@link signToken} and {@link signScopedToken} refuse to sign one, and
 * {@link verifyToken} never accepts one — and `E` is digits, so a plain
 * message has no LF, while a scoped one has at least three. Within the
 * scoped kind, each field is one line in a fixed order with a fixed key, and
 * no value contains an LF (`S` is checked like a path), so a message reads
 * back into exactly one (U, S, P or none, E); the leading marker line names
 * the format for any later version.
 *
 * Within the plain kind, `U:P:E` is ambiguous when `U` contains `:` — uid
 * `a:b` with path `c` and uid `a` with path `b:c` both sign `a:b:c:E` — so a
 * URL signed for one (user, file) would also open another file, billed to
 * another uid. `E` is digits only and comes last, so it can never absorb a
 * `:`; only the uid/path split is in doubt. The format is a contract shared
 * with existing issuers, so rather than change it we make the split unique:
 * a uid never contains `:`. {@link signToken} refuses to mint a token for
 * one, {@link verifyToken} never accepts one, so {@link checkSignedRequest}
 * answers `'bad'`. The uid is then everything before the first `:`, `E`
 * everything after the last, and the path (which may contain `:`) what is
 * between. An issuer that mints tokens for such uids has its URLs refused,
 * loudly, rather than honoured ambiguously.
 */

/**
 * Outcome of {@link checkSignedRequest}: `'bad'` and `'ip-mismatch'` (a
 * verified IP-bound token from outside its block) → 403, `'expired'` → 410.
 */
export type SignedRequestCheck = 'ok' | 'bad' | 'ip-mismatch' | 'expired'

/** A query parameter as a query-string parser hands it over (repeated → array). */
export type QueryValue = string | readonly string[] | undefined

/** Everything {@link checkSignedRequest} looks at. */
export interface SignedRequest {
  /** `SIGNING_SECRET`; must not be empty. */
  secret: string
  /** The `uid` query parameter. */
  uid: QueryValue
  /** URL-decoded request path without its leading slash, e.g. `hls/v1/index.m3u8`. */
  path: string
  /** The `expires` query parameter: unix seconds, decimal digits only. */
  expires: QueryValue | number
  /** The `token` query parameter. */
  token: QueryValue
  /** The `scope` query parameter; absent for a plain token. */
  scope?: QueryValue
  /** The `ip` query parameter: the token is bound to that client address or block. */
  ip?: QueryValue
  /** The client's IP ({@link normalizeIp}'s form), checked against `ip`. */
  clientIp?: string | undefined
  /** Current time, unix seconds (fractions allowed). */
  now: number
}

/** What {@link signedQuery} signs. */
export interface SignedQueryOptions {
  secret: string
  uid: string
  /** URL-decoded path without its leading slash. */
  path: string
  /** Unix seconds (integer). */
  expires: number
  /** Session id to carry along (`sid`); omitted when undefined or empty. */
  sid?: string | undefined
  /**
   * Sign a scoped token bound to `path` and this scope (`/dir/`, under which
   * `path` must lie) instead of a plain one; the query carries `scope`.
   */
  scope?: string | undefined
  /** Bind the token to this client address or CIDR block ({@link ipBinding}); the query carries `ip`. */
  ip?: string | undefined
}

const HEX_TOKEN = /^[0-9a-f]{64}$/
// 32 bytes = 256 bits in 43 base64url characters (258 bits): the last
// character carries 2 padding bits, which must be zero. Without this check
// four spellings of every token would verify (RFC 4648 §3.5 lets a decoder
// reject non-canonical encodings; we do).
const BASE64URL_TOKEN = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/
const DIGITS = /^[0-9]{1,15}$/ // 15 digits: past year 30000, and still exact as a number
// C0 controls, DEL and C1 controls: never in a uid, path or scope (see the module comment).
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/ // eslint-disable-line no-control-regex
/** First line of a scoped token's message. */
const SCOPED_MARKER = 'streammeter-token-v2'

/**
 * The token for `uid` to fetch `path` until `expires`, as lowercase hex.
 * @param secret - the signing secret, not empty
 * @param uid - user id; must not contain `:` or a control character (see the module comment)
 * @param path - URL-decoded path without its leading slash
 * @param expires - unix seconds, a non-negative integer
 * @throws {TypeError} on an empty secret, a uid with `:` or a control character or empty, a path
 *   with a leading `/` or a control character,
 *   or an `expires` that is not a non-negative safe integer: such a token could never verify
 */
export function signToken (secret: string, uid: string, path: string, expires: number): string {
  checkSignable(secret, uid, path, expires)
  return mac(secret, uid, path, String(expires)).toString('hex')
}

/** {@link signToken}'s checks of its arguments. */
function checkSignable (secret: string, uid: string, path: string, expires: number): void {
  if (secret === '') throw new TypeError('signing secret is empty')
  if (!isSignableUid(uid)) throw new TypeError('uid must be non-empty and contain no ":" or control character')
  if (CONTROL.test(path)) throw new TypeError('path must not contain a control character')
  // A leading slash is the usual mistake (passing the URL path as is): the
  // server signs paths without it, so such a token would only ever get 403.
  if (path.startsWith('/')) throw new TypeError('path must not start with "/"')
  if (!Number.isSafeInteger(expires) || expires < 0) throw new TypeError('expires must be a non-negative integer (unix seconds)')
}

/**
 * Whether `token` (lowercase hex or unpadded base64url) is the HMAC for
 * (`uid`, `path`, `expires`). Compares in constant time; a token of the wrong
 * length or alphabet is `false`, never an exception, and so is an empty uid or
 * one with `:` or a control character, whose token would be ambiguous (see the module comment). Does
 * not look at the clock: see {@link checkSignedRequest}.
 * @param expires - unix seconds; a string is signed exactly as written (digits only)
 */
export function verifyToken (secret: string, uid: string, path: string, expires: number | string, token: string): boolean {
  if (secret === '') throw new TypeError('signing secret is empty')
  if (!isSignableUid(uid)) return false
  const e = typeof expires === 'number' ? (Number.isSafeInteger(expires) && expires >= 0 ? String(expires) : undefined) : expires
  if (e === undefined || !DIGITS.test(e)) return false
  const presented = decodeToken(token)
  if (presented === undefined) return false
  // Both buffers are 32 bytes here, as timingSafeEqual requires; the format
  // checks above depend only on the presented token, never on the secret.
  return timingSafeEqual(mac(secret, uid, path, e), presented)
}

/**
 * Checks a request's `uid`, `expires`, `token` (and `scope`, when present)
 * for `path`, in the order docs/access.md#signed-urls gives: anything missing, repeated or
 * malformed, or a token that does not verify, is `'bad'` whatever `expires`
 * says (so that an attacker learns nothing from editing `expires`); only a
 * verified token whose `expires` is before `now` is `'expired'`. A URL is
 * valid through its `expires` second. With `scope`, the token must be a
 * scoped one (bound to `path` or to no path) and `path` must lie under it.
 */
export function checkSignedRequest (req: SignedRequest): SignedRequestCheck {
  const { uid, token, now, scope, ip } = req
  // Repeated parameters (arrays) are refused: which copy a check reads and
  // which one the meter bills must never differ (HTTP parameter pollution).
  // An empty uid or one with `:` is refused by verifyToken.
  if (typeof uid !== 'string') return 'bad'
  if (typeof token !== 'string') return 'bad'
  const expires = typeof req.expires === 'number' ? String(req.expires) : req.expires
  if (typeof expires !== 'string' || !DIGITS.test(expires)) return 'bad'
  const binding = typeof ip === 'string' ? ipBinding(ip) : undefined
  if (ip !== undefined && binding === undefined) return 'bad'
  const bound = ip as string | undefined
  if (scope === undefined && bound === undefined) {
    if (!verifyToken(req.secret, uid, req.path, expires, token)) return 'bad'
  } else if (scope === undefined) {
    if (!verifyV2Token(req.secret, uid, undefined, req.path, bound, expires, token)) return 'bad'
  } else {
    if (typeof scope !== 'string' || !isScope(scope) || !inScope(req.path, scope)) return 'bad'
    if (!verifyV2Token(req.secret, uid, scope, req.path, bound, expires, token)) return 'bad'
  }
  // After the signature, so that the answer says nothing about an unsigned binding.
  if (binding !== undefined && (req.clientIp === undefined || !IpBlockList.of([binding]).has(req.clientIp))) return 'ip-mismatch'
  return Number(expires) < now ? 'expired' : 'ok'
}

/**
 * A scoped token (see the module comment) for `uid` under `scope` until
 * `expires`, bound to `path` when it is given, as lowercase hex.
 * @param scope - a directory with leading and trailing `/` (`/t/`; `/` for everything)
 * @param path - URL-decoded, without its leading slash, under `scope`; omitted: any path under it
 * @throws {TypeError} as {@link signToken}, and for a scope that is no directory or a path outside it
 */
export function signScopedToken (secret: string, uid: string, scope: string, expires: number, path?: string, ip?: string): string {
  if (secret === '') throw new TypeError('signing secret is empty')
  if (!isSignableUid(uid)) throw new TypeError('uid must be non-empty and contain no ":" or control character')
  if (!isScope(scope)) throw new TypeError('scope must be a directory such as /videos/t1/ (leading and trailing "/", no empty, "." or ".." segment, no control character)')
  if (path !== undefined && (CONTROL.test(path) || path.startsWith('/') || !inScope(path, scope))) {
    throw new TypeError('path must be under the scope, without a leading "/" or a control character')
  }
  if (!Number.isSafeInteger(expires) || expires < 0) throw new TypeError('expires must be a non-negative integer (unix seconds)')
  checkBinding(ip)
  return v2Mac(secret, uid, scope, path, ip, String(expires)).toString('hex')
}

/**
 * An IP-bound token without a scope (see the module comment): valid for
 * `path` only, from a client in `ip` only, as lowercase hex.
 * @param ip - an address or CIDR block ({@link ipBinding})
 * @throws {TypeError} as {@link signToken}, and for an `ip` that is no address or block
 */
export function signIpBoundToken (secret: string, uid: string, path: string, ip: string, expires: number): string {
  checkSignable(secret, uid, path, expires)
  checkBinding(ip)
  return v2Mac(secret, uid, undefined, path, ip, String(expires)).toString('hex')
}

/**
 * The block an `ip` binding names: an IPv4 or IPv6 address or CIDR block,
 * written without spaces; an IPv4-mapped IPv6 one (`::ffff:…`) is refused
 * (a client's address is compared in its IPv4 form, docs/access.md).
 * Undefined for anything else.
 */
export function ipBinding (text: string): IpBlock | undefined {
  if (text !== text.trim()) return undefined
  const block = parseIpBlock(text)
  if (block === undefined) return undefined
  const address = text.split('/')[0] as string
  if (isIP(address) === 6 && isIP(normalizeIp(address) ?? '') === 4) return undefined
  return block
}

function checkBinding (ip: string | undefined): void {
  if (ip !== undefined && ipBinding(ip) === undefined) {
    throw new TypeError('ip must be an IPv4 or IPv6 address or CIDR block (not IPv4-mapped), e.g. 203.0.113.0/24 or 2001:db8::/32')
  }
}

/**
 * Whether `token` is a v2 token for (`uid`, `scope`, `ip`, `expires`):
 * with a scope, bound to `path` or to no path (both candidates always
 * computed and compared, so the time taken does not tell which kind a
 * forged token was aimed at); without one, bound to `path`. Constant time
 * per candidate.
 */
function verifyV2Token (secret: string, uid: string, scope: string | undefined, path: string, ip: string | undefined, expires: string, token: string): boolean {
  if (!isSignableUid(uid)) return false
  const presented = decodeToken(token)
  if (presented === undefined) return false
  const bound = timingSafeEqual(v2Mac(secret, uid, scope, path, ip, expires), presented)
  if (scope === undefined) return bound
  const free = timingSafeEqual(v2Mac(secret, uid, scope, undefined, ip, expires), presented)
  return bound || free
}

/**
 * Whether `scope` is a directory as a scoped token names one: `/`, or
 * `/a/b/` with segments a path may have (not empty, `.` or `..`, no control
 * character). Its value goes into the signed message as it is.
 */
export function isScope (scope: string): boolean {
  if (scope === '/') return true
  if (scope.length < 3 || !scope.startsWith('/') || !scope.endsWith('/') || CONTROL.test(scope)) return false
  for (const segment of scope.slice(1, -1).split('/')) {
    if (segment === '' || segment === '.' || segment === '..') return false
  }
  return true
}

/** Whether `path` (no leading slash) lies under the directory `scope` (`/dir/`). */
export function inScope (path: string, scope: string): boolean {
  return scope === '/' || (path.length > scope.length - 1 && path.startsWith(scope.slice(1)))
}

/** The scope a plain-signed path gives its children: its own directory (`t/master.m3u8` → `/t/`). */
export function directoryOf (path: string): string {
  return '/' + path.slice(0, path.lastIndexOf('/') + 1)
}

/**
 * The query string of a signed URL: `uid=…&expires=…[&scope=…]&token=…[&sid=…]`,
 * percent-encoded with `encodeURIComponent` (a space is `%20`, never `+`, so
 * that any query parser reads it back), token in lowercase hex. No leading `?`.
 * @throws {TypeError} as {@link signToken}
 */
export function signedQuery (opts: SignedQueryOptions): string {
  const { secret, uid, path, expires, sid, scope, ip } = opts
  const bound = ip === undefined ? '' : `&ip=${encodeBinding(ip)}`
  let q: string
  if (scope === undefined && ip === undefined) {
    q = `uid=${encodeURIComponent(uid)}&expires=${expires}&token=${signToken(secret, uid, path, expires)}`
  } else if (scope === undefined) {
    q = `uid=${encodeURIComponent(uid)}&expires=${expires}${bound}&token=${signIpBoundToken(secret, uid, path, ip as string, expires)}`
  } else {
    const token = signScopedToken(secret, uid, scope, expires, path, ip)
    q = `uid=${encodeURIComponent(uid)}&expires=${expires}&scope=${encodeScope(scope)}${bound}&token=${token}`
  }
  if (sid !== undefined && sid !== '') q += `&sid=${encodeURIComponent(sid)}`
  return q
}

/** An `ip` binding for a query string: its `:` and `/` left readable (RFC 3986 §3.4 allows both in a query). */
export function encodeBinding (ip: string): string {
  return encodeURIComponent(ip).replaceAll('%3A', ':').replaceAll('%2F', '/')
}

/** `scope` for a query string: percent-encoded, its slashes left readable (RFC 3986 §3.4 allows `/` in a query). */
export function encodeScope (scope: string): string {
  return encodeURIComponent(scope).replaceAll('%2F', '/')
}

/** Non-empty, no `:` (the plain message's separator), no control character (the scoped one's). */
function isSignableUid (uid: string): boolean {
  return uid !== '' && !uid.includes(':') && !CONTROL.test(uid)
}

function mac (secret: string, uid: string, path: string, expires: string): Buffer {
  return createHmac('sha256', secret).update(`${uid}:${path}:${expires}`, 'utf8').digest()
}

/** The HMAC of a v2 message: the marker, then each field given on its own line, in a fixed order. */
function v2Mac (secret: string, uid: string, scope: string | undefined, path: string | undefined, ip: string | undefined, expires: string): Buffer {
  let message = `${SCOPED_MARKER}\nuid=${uid}`
  if (scope !== undefined) message += `\nscope=${scope}`
  if (path !== undefined) message += `\npath=${path}`
  if (ip !== undefined) message += `\nip=${ip}`
  message += `\nexpires=${expires}`
  return createHmac('sha256', secret).update(message, 'utf8').digest()
}

/** The 32 bytes a presented token spells, or undefined when it is no valid spelling. */
function decodeToken (token: string): Buffer | undefined {
  if (token.length === 64 && HEX_TOKEN.test(token)) return Buffer.from(token, 'hex')
  if (token.length === 43 && BASE64URL_TOKEN.test(token)) return Buffer.from(token, 'base64url')
  return undefined
}
