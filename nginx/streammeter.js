// The nginx engine's access check, in njs (nginx's JavaScript; Debian's
// libnginx-mod-http-js, njs 0.7): the same verdicts as the node engine's
// src/server/access/authorize.ts and url-signer.ts give, for the same
// request, so that a signed URL opens the same files under either engine
// (docs/access.md#signed-urls). test/e2e/nginx-access.test.ts runs both on
// the same requests and compares every answer.
//
// njs gives each request a VM of its own, so module state is per request:
// the check runs once and every variable reads its result.
const crypto = require('crypto')

const MAX_UID_LENGTH = 256
const DIGITS = /^[0-9]{1,15}$/
const HEX_TOKEN = /^[0-9a-f]{64}$/
const BASE64URL_TOKEN = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/
// C0 controls, DEL and C1 controls: never in a uid or scope.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/ // eslint-disable-line no-control-regex
const SCOPED_MARKER = 'streammeter-token-v2'

let result

/** `{ verdict: 'ok' | 'bad' | 'expired' | 'long-uid', uid }` for this request, computed once. */
function check (r) {
  if (result !== undefined) return result
  const uid = first(r.args.uid)
  if (uid !== undefined && utf16Length(uid) > MAX_UID_LENGTH) {
    result = { verdict: 'long-uid', uid: '' }
    return result
  }
  const secretHex = r.variables.sm_secret_hex
  if (secretHex === undefined || secretHex === '') {
    result = { verdict: 'ok', uid: uid === undefined ? '' : uid }
    return result
  }
  result = { verdict: verdict(Buffer.from(secretHex, 'hex'), uid, r.uri.slice(1), first(r.args.expires), first(r.args.token), first(r.args.scope)), uid: uid === undefined ? '' : uid }
  if (result.verdict !== 'ok') result.uid = ''
  return result
}

/**
 * A string's length as JavaScript in Node counts it (UTF-16 code units): njs
 * counts code points, and a character past U+FFFF is two units in Node. Such
 * a character is the one whose UTF-8 form starts with a byte of 0xF0 or more.
 */
function utf16Length (s) {
  const bytes = Buffer.from(s)
  let n = s.length
  for (let i = 0; i < bytes.length; i++) if (bytes[i] >= 0xf0) n++
  return n
}

/** The first value of a query parameter, undefined when it is absent or empty (as URLSearchParams.get and authorize.ts read it). */
function first (v) {
  const s = Array.isArray(v) ? v[0] : v
  return typeof s === 'string' && s !== '' ? s : undefined
}

function verdict (secret, uid, path, expires, token, scope) {
  if (uid === undefined || token === undefined) return 'bad'
  if (expires === undefined || !DIGITS.test(expires)) return 'bad'
  if (!isSignableUid(uid)) return 'bad'
  const presented = decodeToken(token)
  if (presented === undefined) return 'bad'
  if (scope === undefined) {
    if (!same(hmac(secret, `${uid}:${path}:${expires}`), presented)) return 'bad'
  } else {
    if (!isScope(scope) || !inScope(path, scope)) return 'bad'
    // Both candidates are computed and compared, as url-signer.ts does.
    const bound = same(hmac(secret, `${SCOPED_MARKER}\nuid=${uid}\nscope=${scope}\npath=${path}\nexpires=${expires}`), presented)
    const free = same(hmac(secret, `${SCOPED_MARKER}\nuid=${uid}\nscope=${scope}\nexpires=${expires}`), presented)
    if (!bound && !free) return 'bad'
  }
  // Valid through its `expires` second, as url-signer.ts compares whole seconds.
  return Number(expires) < Math.floor(Date.now() / 1000) ? 'expired' : 'ok'
}

function isSignableUid (uid) {
  return uid !== '' && uid.indexOf(':') === -1 && !CONTROL.test(uid)
}

function isScope (scope) {
  if (scope === '/') return true
  if (scope.length < 3 || scope[0] !== '/' || scope[scope.length - 1] !== '/' || CONTROL.test(scope)) return false
  const segments = scope.slice(1, -1).split('/')
  for (let i = 0; i < segments.length; i++) {
    if (segments[i] === '' || segments[i] === '.' || segments[i] === '..') return false
  }
  return true
}

function inScope (path, scope) {
  return scope === '/' || (path.length > scope.length - 1 && path.startsWith(scope.slice(1)))
}

function hmac (secret, message) {
  return crypto.createHmac('sha256', secret).update(message).digest('hex')
}

/** The 32 bytes a token spells, as lowercase hex; undefined when it is no valid spelling. */
function decodeToken (token) {
  if (token.length === 64 && HEX_TOKEN.test(token)) return token
  if (token.length === 43 && BASE64URL_TOKEN.test(token)) return Buffer.from(token, 'base64url').toString('hex')
  return undefined
}

/** Constant-time comparison of two 64-digit hex strings. */
function same (a, b) {
  let diff = 0
  for (let i = 0; i < 64; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i)
  return diff === 0
}

/** `$sm_access`: `ok`, `bad` (403), `expired` (410) or `long-uid` (400). */
function access (r) {
  return check(r).verdict
}

/** `$sm_uid`: the uid the request is metered under; empty when it has none or was refused. */
function uid (r) {
  return check(r).uid
}

/** `$sm_sid`: the `sid` query parameter, decoded (the reader applies the session rules). */
function sid (r) {
  const v = first(r.args.sid)
  return v === undefined ? '' : v
}

/** `$sm_method_error`: the node engine's 405 body for this request's method. */
function methodError (r) {
  return JSON.stringify({ error: { code: 'SM_ERR_METHOD_NOT_ALLOWED', message: `method ${r.method.slice(0, 16)} is not allowed` } })
}

// Parameters the proxy consumes (src/server/origin/origin-query.ts): never sent on.
const OWN_PARAMETERS = ['uid', 'expires', 'token', 'sid', 'scope', 'ip']

/**
 * `$sm_origin_uri`: the path and query an HTTP origin gets, as the node
 * engine's http-origin.ts and origin-query.ts build them: the base URL's
 * path (`$sm_origin_path_hex`), the decoded request path with each segment
 * percent-encoded, then the base URL's query and the client's parameters
 * less the proxy's own and those the base query names.
 */
function originUri (r) {
  const basePath = Buffer.from(r.variables.sm_origin_path_hex || '', 'hex').toString()
  const baseQuery = Buffer.from(r.variables.sm_origin_query_hex || '', 'hex').toString()
  const dropped = OWN_PARAMETERS.concat(baseQuery === '' ? [] : baseQuery.split('&').filter((p) => p !== '').map(nameOf))
  const client = (r.variables.args || '').split('&').filter((p) => p !== '' && dropped.indexOf(nameOf(p)) === -1).join('&')
  const query = baseQuery === '' ? client : client === '' ? baseQuery : `${baseQuery}&${client}`
  const path = basePath + r.uri.slice(1).split('/').map(encodeURIComponent).join('/')
  return query === '' ? path : `${path}?${query}`
}

/** A parameter's name, decoded as URLSearchParams decodes it (`+` is a space; a bad escape stays as it is). */
function nameOf (piece) {
  const eq = piece.indexOf('=')
  const raw = (eq === -1 ? piece : piece.slice(0, eq)).replace(/\+/g, ' ')
  try {
    return decodeURIComponent(raw)
  } catch (e) {
    return raw
  }
}

export default { access, uid, sid, methodError, originUri }
