import { createHmac, timingSafeEqual } from 'node:crypto'

/**
 * Signed media URLs (DESIGN §4): `?uid=U&expires=E&token=T` where
 * `T = HMAC-SHA256(secret, "U:P:E")`, `P` the URL-decoded request path without
 * its leading slash and `E` unix seconds. `T` is lowercase hex or unpadded
 * base64url.
 *
 * The signing string is ambiguous when `U` contains `:` — uid `a:b` with path
 * `c` and uid `a` with path `b:c` both sign `a:b:c:E` — so a URL signed for one
 * (user, file) would also open another file, billed to another uid. `E` is
 * digits only and comes last, so it can never absorb a `:`; only the uid/path
 * split is in doubt. The format is a contract shared with existing issuers, so
 * rather than change it we make the split unique: a uid never contains `:`.
 * {@link signToken} refuses to mint a token for one, {@link verifyToken}
 * never accepts one, so {@link checkSignedRequest} answers `'bad'`. The uid
 * is then everything before the first `:`, `E` everything after the last, and
 * the path (which may contain `:`) what is between. An issuer that mints
 * tokens for such uids has its URLs refused, loudly, rather than honoured
 * ambiguously.
 */

/** Outcome of {@link checkSignedRequest}: `'bad'` → 403, `'expired'` → 410. */
export type SignedRequestCheck = 'ok' | 'bad' | 'expired'

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
}

const HEX_TOKEN = /^[0-9a-f]{64}$/
// 32 bytes = 256 bits in 43 base64url characters (258 bits): the last
// character carries 2 padding bits, which must be zero. Without this check
// four spellings of every token would verify (RFC 4648 §3.5 lets a decoder
// reject non-canonical encodings; we do).
const BASE64URL_TOKEN = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/
const DIGITS = /^[0-9]{1,15}$/ // 15 digits: past year 30000, and still exact as a number

/**
 * The token for `uid` to fetch `path` until `expires`, as lowercase hex.
 * @param secret - the signing secret, not empty
 * @param uid - user id; must not contain `:` (see the module comment)
 * @param path - URL-decoded path without its leading slash
 * @param expires - unix seconds, a non-negative integer
 * @throws {TypeError} on an empty secret, a uid with `:` or empty, a path with a leading `/`,
 *   or an `expires` that is not a non-negative safe integer: such a token could never verify
 */
export function signToken (secret: string, uid: string, path: string, expires: number): string {
  if (secret === '') throw new TypeError('signing secret is empty')
  if (uid === '' || uid.includes(':')) throw new TypeError('uid must be non-empty and contain no ":"')
  // A leading slash is the usual mistake (passing the URL path as is): the
  // server signs paths without it, so such a token would only ever get 403.
  if (path.startsWith('/')) throw new TypeError('path must not start with "/"')
  if (!Number.isSafeInteger(expires) || expires < 0) throw new TypeError('expires must be a non-negative integer (unix seconds)')
  return mac(secret, uid, path, String(expires)).toString('hex')
}

/**
 * Whether `token` (lowercase hex or unpadded base64url) is the HMAC for
 * (`uid`, `path`, `expires`). Compares in constant time; a token of the wrong
 * length or alphabet is `false`, never an exception, and so is an empty uid or
 * one with `:`, whose token would be ambiguous (see the module comment). Does
 * not look at the clock: see {@link checkSignedRequest}.
 * @param expires - unix seconds; a string is signed exactly as written (digits only)
 */
export function verifyToken (secret: string, uid: string, path: string, expires: number | string, token: string): boolean {
  if (secret === '') throw new TypeError('signing secret is empty')
  if (uid === '' || uid.includes(':')) return false
  const e = typeof expires === 'number' ? (Number.isSafeInteger(expires) && expires >= 0 ? String(expires) : undefined) : expires
  if (e === undefined || !DIGITS.test(e)) return false
  const presented = decodeToken(token)
  if (presented === undefined) return false
  // Both buffers are 32 bytes here, as timingSafeEqual requires; the format
  // checks above depend only on the presented token, never on the secret.
  return timingSafeEqual(mac(secret, uid, path, e), presented)
}

/**
 * Checks a request's `uid`, `expires` and `token` for `path`, in DESIGN §4's
 * order: anything missing, repeated or malformed, or a token that does not
 * verify, is `'bad'` whatever `expires` says (so that an attacker learns
 * nothing from editing `expires`); only a verified token whose `expires` is
 * before `now` is `'expired'`. A URL is valid through its `expires` second.
 */
export function checkSignedRequest (req: SignedRequest): SignedRequestCheck {
  const { uid, token, now } = req
  // Repeated parameters (arrays) are refused: which copy a check reads and
  // which one the meter bills must never differ (HTTP parameter pollution).
  // An empty uid or one with `:` is refused by verifyToken.
  if (typeof uid !== 'string') return 'bad'
  if (typeof token !== 'string') return 'bad'
  const expires = typeof req.expires === 'number' ? String(req.expires) : req.expires
  if (typeof expires !== 'string' || !DIGITS.test(expires)) return 'bad'
  if (!verifyToken(req.secret, uid, req.path, expires, token)) return 'bad'
  return Number(expires) < now ? 'expired' : 'ok'
}

/**
 * The query string of a signed URL: `uid=…&expires=…&token=…[&sid=…]`,
 * percent-encoded with `encodeURIComponent` (a space is `%20`, never `+`, so
 * that any query parser reads it back), token in lowercase hex. No leading `?`.
 * @throws {TypeError} as {@link signToken}
 */
export function signedQuery (opts: SignedQueryOptions): string {
  const { secret, uid, path, expires, sid } = opts
  const token = signToken(secret, uid, path, expires)
  let q = `uid=${encodeURIComponent(uid)}&expires=${expires}&token=${token}`
  if (sid !== undefined && sid !== '') q += `&sid=${encodeURIComponent(sid)}`
  return q
}

function mac (secret: string, uid: string, path: string, expires: string): Buffer {
  return createHmac('sha256', secret).update(`${uid}:${path}:${expires}`, 'utf8').digest()
}

/** The 32 bytes a presented token spells, or undefined when it is no valid spelling. */
function decodeToken (token: string): Buffer | undefined {
  if (token.length === 64 && HEX_TOKEN.test(token)) return Buffer.from(token, 'hex')
  if (token.length === 43 && BASE64URL_TOKEN.test(token)) return Buffer.from(token, 'base64url')
  return undefined
}
