// The nginx engine's access check, in njs (nginx's JavaScript; Debian's
// libnginx-mod-http-js, njs 0.7): the same verdicts as the node engine's
// src/server/access/authorize.ts and url-signer.ts give, for the same
// request, so that a signed URL opens the same files under either engine
// (docs/access.md#signed-urls). test/e2e/nginx-access.test.ts runs both on
// the same requests and compares every answer.
//
// njs gives each request a VM of its own, so module state is per request:
// the check runs once and every variable reads its result. The module's
// top level runs again for every request that calls into it, so it holds
// nothing but imports, numbers and strings: a regular expression is written
// where it is used, and the secret is decoded when it is. Every operation
// in here costs nginx CPU on each signed request (docs/performance.md): what
// nginx can decide itself with a regular expression (a plain path, a query
// as the signer writes it) is decided in nginx-request-maps.ts, and this module
// gets the pieces.
import crypto from 'crypto'
// Rendered beside nginx.conf (nginx-config.ts `renderNjsSettings`), owner-only:
// the signing secret, read once when nginx loads its configuration.
import settings from 'streammeter-settings.js'

const SIGNED = settings.secretHex !== ''
/** The uid parameter alone grants nothing: a secret, or `ACCESS_API_KEY`, is set (docs/access.md). */
const LOCKED = SIGNED || settings.locked === true
/** ACCESS_OPEN_EXTENSIONS is set: nginx's `$sm_open_ext` marks such a path. */
const OPEN = settings.openExtensions === true
const MAX_UID_LENGTH = 256
const SCOPED_MARKER = 'streammeter-token-v2'

let result

/** `{ verdict: 'ok' | 'bad' | 'expired' | 'long-uid', uid }` for this request, computed once. */
function check (r) {
  if (result !== undefined) return result
  const uid = first(r.args.uid)
  // At most four UTF-16 units per character: a short uid cannot be too long.
  if (uid !== undefined && uid.length > MAX_UID_LENGTH / 4 && utf16Length(uid) > MAX_UID_LENGTH) {
    result = { verdict: 'long-uid', uid: '' }
    return result
  }
  // Unsigned mode, or a client of ACCESS_ALLOW_CIDRS (nginx's geo block): the uid parameter is believed.
  if (!LOCKED || r.variables.sm_allowed_net === '1') {
    result = { verdict: 'ok', uid: uid === undefined ? '' : uid }
    return result
  }
  if (!SIGNED) {
    result = { verdict: 'bad', uid: '' }
    return result
  }
  const bound = { ip: first(r.args.ip), client: r.variables.remote_addr }
  result = { verdict: verdict(secret(), uid, r.uri.slice(1), first(r.args.expires), first(r.args.token), first(r.args.scope), bound), uid: uid === undefined ? '' : uid }
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

/**
 * The verdict on a signed URL, as url-signer.ts `checkSignedRequest` gives
 * it; `bound.ip` is the `ip` parameter (an IP-bound token), `bound.client`
 * the client's address (`$remote_addr`, realip applied).
 */
function verdict (secret, uid, path, expires, token, scope, bound) {
  /** A v2 token's message: the marker, then each field given on its own line, in a fixed order (url-signer.ts). */
  function v2Message (uid, scope, path, ip, expires) {
    let m = `${SCOPED_MARKER}\nuid=${uid}`
    if (scope !== undefined) m += `\nscope=${scope}`
    if (path !== undefined) m += `\npath=${path}`
    if (ip !== undefined) m += `\nip=${ip}`
    return `${m}\nexpires=${expires}`
  }

  if (uid === undefined || token === undefined) return 'bad'
  if (expires === undefined || !/^[0-9]{1,15}$/.test(expires)) return 'bad'
  if (!isSignableUid(uid)) return 'bad'
  const presented = decodeToken(token)
  if (presented === undefined) return 'bad'
  const ip = bound.ip
  const tools = ip === undefined ? undefined : ipTools()
  const block = tools === undefined ? undefined : tools.ipBlock(ip)
  if (ip !== undefined && block === undefined) return 'bad'
  if (scope === undefined && ip === undefined) {
    if (!same(hmac(secret, `${uid}:${path}:${expires}`), presented)) return 'bad'
  } else if (scope === undefined) {
    if (!same(hmac(secret, v2Message(uid, undefined, path, ip, expires)), presented)) return 'bad'
  } else {
    if (!isScope(scope) || !inScope(path, scope)) return 'bad'
    // Both candidates are computed and compared, as url-signer.ts does.
    const withPath = same(hmac(secret, v2Message(uid, scope, path, ip, expires)), presented)
    const free = same(hmac(secret, v2Message(uid, scope, undefined, ip, expires)), presented)
    if (!withPath && !free) return 'bad'
  }
  // After the signature, as url-signer.ts checks it.
  if (block !== undefined && !tools.inBlock(block, tools.ipBytes(bound.client, false))) return 'ip-mismatch'
  // Valid through its `expires` second, as url-signer.ts compares whole seconds.
  return Number(expires) < Math.floor(Date.now() / 1000) ? 'expired' : 'ok'
}

/**
 * The IP-binding helpers, made on first use: njs 0.7 runs a module's top
 * level again for every request, and each function declared there costs
 * every request (docs/performance.md); these serve only IP-bound tokens.
 */
function ipTools () {
  /**
   * An `ip` binding as url-signer.ts `ipBinding` reads it: `{ bytes, prefix }`
   * for an IPv4 or IPv6 address or CIDR block that is not IPv4-mapped, else
   * undefined.
   */
  function ipBlock (text) {
    const m = /^([0-9A-Fa-f:.]+)(?:\/([0-9]{1,3}))?$/.exec(text)
    if (m === null) return undefined
    const bytes = ipBytes(m[1], true)
    if (bytes === undefined) return undefined
    const prefix = m[2] === undefined ? bytes.length * 8 : Number(m[2])
    if (prefix > bytes.length * 8) return undefined
    return { bytes, prefix }
  }

  /**
   * The bytes of a textual IP address: 4 for IPv4, 16 for IPv6; an
   * IPv4-mapped IPv6 address gives its IPv4 bytes, or undefined when
   * `refuseMapped`. Undefined for anything that is no address, as Node's
   * `isIP` decides (no leading zeros in IPv4, one to four hex digits a group,
   * at most one `::`, a dotted IPv4 part only at the end).
   */
  function ipBytes (text, refuseMapped) {
    if (typeof text !== 'string' || text === '') return undefined
    if (text.indexOf(':') === -1) return ipv4Bytes(text)
    let s = text
    let tail = []
    if (s.indexOf('.') !== -1) {
      const at = s.lastIndexOf(':') + 1
      const v4 = ipv4Bytes(s.slice(at))
      if (v4 === undefined) return undefined
      tail = [(v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]]
      // `…::1.2.3.4` keeps its `::`; `…:1.2.3.4` loses its last `:`.
      s = s.slice(0, at).endsWith('::') ? s.slice(0, at) : s.slice(0, at - 1)
    }
    const halves = s.split('::')
    if (halves.length > 2) return undefined
    const groups = (p) => p === '' ? [] : p.split(':')
    const head = groups(halves[0])
    const rest = halves.length === 2 ? groups(halves[1]) : []
    const all = head.concat(rest)
    for (let i = 0; i < all.length; i++) if (!/^[0-9A-Fa-f]{1,4}$/.test(all[i])) return undefined
    const count = all.length + tail.length
    if (halves.length === 1 ? count !== 8 : count > 7) return undefined
    const words = head.map((h) => parseInt(h, 16))
    for (let i = count; i < 8; i++) words.push(0)
    for (let i = 0; i < rest.length; i++) words.push(parseInt(rest[i], 16))
    for (let i = 0; i < tail.length; i++) words.push(tail[i])
    let mapped = words[5] === 0xffff
    for (let i = 0; i < 5; i++) if (words[i] !== 0) mapped = false
    if (mapped) return refuseMapped ? undefined : [words[6] >> 8, words[6] & 0xff, words[7] >> 8, words[7] & 0xff]
    const bytes = []
    for (let i = 0; i < 8; i++) bytes.push(words[i] >> 8, words[i] & 0xff)
    return bytes
  }

  function ipv4Bytes (text) {
    const parts = text.split('.')
    if (parts.length !== 4) return undefined
    const bytes = []
    for (let i = 0; i < 4; i++) {
      if (!/^(0|[1-9][0-9]{0,2})$/.test(parts[i])) return undefined
      const n = Number(parts[i])
      if (n > 255) return undefined
      bytes.push(n)
    }
    return bytes
  }

  /** Whether the address `bytes` lies in `block` (the same family only). */
  function inBlock (block, bytes) {
    if (bytes === undefined || bytes.length !== block.bytes.length) return false
    let bits = block.prefix
    for (let i = 0; bits > 0; i++, bits -= 8) {
      const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff
      if ((bytes[i] & mask) !== (block.bytes[i] & mask)) return false
    }
    return true
  }

  return { ipBlock, ipBytes, inBlock }
}

function isSignableUid (uid) {
  return uid !== '' && uid.indexOf(':') === -1 && !hasControl(uid)
}

function isScope (scope) {
  if (scope === '/') return true
  if (scope.length < 3 || scope[0] !== '/' || scope[scope.length - 1] !== '/' || hasControl(scope)) return false
  const segments = scope.slice(1, -1).split('/')
  for (let i = 0; i < segments.length; i++) {
    if (segments[i] === '' || segments[i] === '.' || segments[i] === '..') return false
  }
  return true
}

function inScope (path, scope) {
  return scope === '/' || (path.length > scope.length - 1 && path.startsWith(scope.slice(1)))
}

/** The signing secret's bytes. */
function secret () {
  return Buffer.from(settings.secretHex, 'hex')
}

/** C0 controls, DEL and C1 controls: never in a uid, a scope or a path. */
function hasControl (s) {
  return /[\u0000-\u001f\u007f-\u009f]/.test(s) // eslint-disable-line no-control-regex
}

function hmac (secret, message) {
  return crypto.createHmac('sha256', secret).update(message).digest()
}

/** The 32 bytes a token spells; undefined when it is no valid spelling. */
function decodeToken (token) {
  if (token.length === 64 && /^[0-9a-f]{64}$/.test(token)) return Buffer.from(token, 'hex')
  if (token.length === 43 && /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/.test(token)) return Buffer.from(token, 'base64url')
  return undefined
}

/**
 * Constant-time comparison of two 32-byte digests, six bytes at a time:
 * the same steps whatever the bytes (a byte at a time, or a hex character
 * at a time, costs several times more of nginx's CPU, docs/performance.md).
 * A six-byte word is an exact integer; `^` would cut it to 32 bits, `!==`
 * does not.
 */
function same (a, b) {
  let diff = a.readUInt16BE(30) ^ b.readUInt16BE(30)
  for (let i = 0; i < 30; i += 6) diff |= a.readUIntBE(i, 6) !== b.readUIntBE(i, 6)
  return diff === 0
}

/**
 * `$sm_access`: `ok`, `bad` or `ip-mismatch` (403), `expired` (410) or `long-uid` (400).
 * A query exactly as the signer writes a plain token
 * (`uid=U&expires=E&token=T[&sid=S]`, each value of characters that need no
 * decoding) comes checked for its form and split by nginx-request-maps.ts: its
 * message is `$sm_signed_message`, its parts `$sm_q_*`. Any other query
 * takes the whole check.
 */
function access (r) {
  let v
  if (SIGNED) {
    const message = r.rawVariables.sm_signed_message
    if (message !== undefined && message.length !== 0) v = signedVerdict(r, message)
  }
  if (v === undefined) v = check(r).verdict
  // The last mode: a file of an open extension that nothing else let in is served, unmetered
  // (`open`: $sm_uid stays empty). A uid too long is a 400 first, as in authorize.ts.
  if (OPEN && v !== 'ok' && v !== 'long-uid' && r.variables.sm_open_ext === '1') return 'open'
  return v
}

/** The verdict on a query of the signer's form: its HMAC, then its expiry, as {@link verdict} checks a plain token. */
function signedVerdict (r, message) {
  const token = r.variables.sm_q_token
  const presented = Buffer.from(token, token.length === 64 ? 'hex' : 'base64url')
  if (!same(hmac(secret(), message), presented)) return 'bad'
  return Number(r.variables.sm_q_expires) < Math.floor(Date.now() / 1000) ? 'expired' : 'ok'
}

/** `$sm_access` for a client of an allowed network (`ACCESS_ALLOW_CIDRS`): only the uid's length is checked. */
function openAccess (r) {
  return check(r).verdict
}

/** `$sm_uid_checked`: the uid of a request the whole check allowed (a query not of the signer's form); empty otherwise. */
function uid (r) {
  return check(r).uid
}

/**
 * `$sm_app_uid`: the uid streammeter let a request in under (a session, a
 * grant: it answered the request itself), from its percent-encoded
 * `X-Streammeter-Uid` answer header; empty for any other request.
 */
function appUid (r) {
  const v = r.variables.upstream_http_x_streammeter_uid
  if (v === undefined || v === '') return ''
  try {
    return decodeURIComponent(v)
  } catch (e) {
    return ''
  }
}

/** `$sm_sid_checked`: the `sid` query parameter, decoded (the reader applies the session rules), for a query that has one not of the signer's form. */
function sid (r) {
  const v = first(r.args.sid)
  return v === undefined ? '' : v
}

/** `$sm_method_error`: the node engine's 405 body for this request's method. */
function methodError (r) {
  return JSON.stringify({ error: { code: 'SM_ERR_METHOD_NOT_ALLOWED', message: `method ${r.method.slice(0, 16)} is not allowed` } })
}

// Longest accepted media path in bytes of its decoded UTF-8 form (src/server/media/request-path.ts).
const MAX_PATH_BYTES = 2048

let pathResult

/**
 * The node engine's path rules (request-path.ts `parseMediaPath`), on the
 * raw path as the client sent it (`$request_uri`), before nginx normalised
 * it: `''` when the path is fine, `hidden` for a dot segment (404), else the
 * node engine's 400 message.
 */
function pathProblem (r) {
  if (pathResult !== undefined) return pathResult
  // The request line's bytes as they came (a raw UTF-8 byte must stay a
  // byte): `$request`, which nginx keeps also for a request line it refused
  // before it had a URI (`%00`), when `$request_uri` is empty.
  const line = r.rawVariables.request
  const first = line === undefined ? -1 : line.indexOf(0x20)
  const last = line === undefined ? -1 : line.lastIndexOf(0x20)
  pathResult = checkPath(first === -1 ? Buffer.from('/') : rawPathOf(last > first ? line.slice(first + 1, last) : line.slice(first + 1)))
  return pathResult
}

/** The raw path of a request target (bytes): the absolute form reduced to its path, the query cut off. */
function rawPathOf (target) {
  let t = target
  if (t[0] !== 0x2f) {
    const m = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i.exec(t.toString())
    if (m !== null) {
      t = t.slice(m[0].length)
      if (t[0] !== 0x2f) t = Buffer.concat([Buffer.from('/'), t])
    }
  }
  const q = t.indexOf(0x3f)
  return q === -1 ? t : t.slice(0, q)
}

function checkPath (raw) {
  if (raw[0] !== 0x2f) return 'the path must start with /'
  if (raw.length > 3 * MAX_PATH_BYTES + 1) return 'the path is too long'
  const bytes = []
  let escaped = false
  for (let i = 1; i < raw.length; i++) {
    const c = raw[i]
    if (c === 0x25) {
      escaped = true
      const hi = hexDigit(raw[i + 1])
      const lo = hexDigit(raw[i + 2])
      // The node engine's router refuses it first, with this message.
      if (hi < 0 || lo < 0) return 'malformed URL'
      const byte = hi * 16 + lo
      if (byte === 0x2f || byte === 0x5c) return 'encoded slash or backslash in the path'
      if (byte === 0) return 'NUL in the path'
      bytes.push(byte)
      i += 2
    } else if (c === 0x5c) {
      return 'backslash in the path'
    } else if (c === 0) {
      return 'NUL in the path'
    } else if (c === 0x23) {
      return 'the path must be percent-encoded'
    } else {
      bytes.push(c)
    }
  }
  if (bytes.length > MAX_PATH_BYTES) return 'the path is too long'
  let path
  try {
    path = new TextDecoder('utf-8', { fatal: true }).decode(new Uint8Array(bytes))
  } catch (e) {
    // A path with a `%` goes through the node engine's router, which
    // refuses a bad one first, with this message.
    return escaped ? 'malformed URL' : 'the path is not valid UTF-8'
  }
  if (hasControl(path)) return 'control character in the path'
  let hidden = false
  const segments = path.split('/')
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]
    if (segment === '' || segment === '.' || segment === '..') return 'empty, . or .. segment in the path'
    if (segment[0] === '.') hidden = true
  }
  return hidden ? 'hidden' : ''
}

function hexDigit (c) {
  if (c >= 0x30 && c <= 0x39) return c - 0x30
  const lower = c | 0x20
  return lower >= 0x61 && lower <= 0x66 ? lower - 0x61 + 10 : -1
}

/** `$sm_path_checked`: `ok`, `hidden` (404) or `bad` (400), for a path that is not plainly fine (nginx-request-maps.ts `$sm_path`). */
function pathVerdict (r) {
  const p = pathProblem(r)
  return p === '' ? 'ok' : p === 'hidden' ? 'hidden' : 'bad'
}

/** `$sm_path_error`: the node engine's 400 body for this request's path (or for a request nginx refused itself). */
function pathError (r) {
  const p = pathProblem(r)
  const message = p === '' || p === 'hidden' ? 'malformed request' : p
  return JSON.stringify({ error: { code: 'SM_ERR_BAD_REQUEST', message } })
}

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
  // The parameters the proxy consumes (src/server/origin/origin-query.ts) are never sent on.
  const dropped = ['uid', 'expires', 'token', 'sid', 'scope', 'ip'].concat(baseQuery === '' ? [] : baseQuery.split('&').filter((p) => p !== '').map(nameOf))
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

export default { access, openAccess, uid, appUid, sid, methodError, originUri, pathVerdict, pathError }
