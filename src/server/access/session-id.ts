import type { IncomingHttpHeaders } from 'node:http'
import { firstValue } from '../header-value.ts'

/**
 * The session id a request is metered under (docs/access.md#identity): the `X-Session-ID`
 * header, else the `session_id_fileserver` cookie, else the `sid` query
 * parameter. Only a count of distinct sessions per uid is reported, but the ids
 * themselves sit in memory and in the store until then, so they are bounded
 * and must be printable.
 */

/** Request header carrying the session id. */
export const SESSION_HEADER = 'x-session-id'
/** Cookie carrying the session id (the name the original service used). */
export const SESSION_COOKIE = 'session_id_fileserver'
/**
 * Longest session id kept, in UTF-16 code units. A longer value is rejected,
 * not truncated: it is no id any player issues (UUIDs are 36, most others
 * shorter), and truncating would make different sessions sharing a long
 * prefix (JWT-like ids do) count as one.
 * @default 128
 */
export const MAX_SESSION_ID_LENGTH = 128

// C0 controls and DEL; a space or tab inside the id is allowed (it cannot be
// at the ends: those are trimmed).
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/

/**
 * The session id of a request, or undefined when it has none. Each source is
 * trimmed; a source that is missing, empty, longer than
 * {@link MAX_SESSION_ID_LENGTH} or holds a control character counts as absent,
 * and the next source is consulted (so a broken header does not hide a good
 * cookie).
 * @param headers - the request headers (lower-case names, as Node gives them)
 * @param sid - the `sid` query parameter
 */
export function sessionIdOf (headers: IncomingHttpHeaders, sid: string | undefined): string | undefined {
  return valid(firstValue(headers[SESSION_HEADER])) ??
    valid(cookieValue(headers.cookie, SESSION_COOKIE)) ??
    valid(typeof sid === 'string' ? sid : undefined)
}

/**
 * The value of the first cookie named `name` in a `Cookie` header, or
 * undefined. Follows the header's grammar (RFC 6265 §4.2.1: `name=value`
 * pairs separated by `;` and a space) leniently, as servers must accept what
 * browsers send (§5.4, and HTTP/2 splitting the header, RFC 9113 §8.2.3):
 * spaces around pairs, names and values are ignored, pairs without `=` and
 * empty pairs skipped. Names match case-sensitively. A value in double quotes
 * loses its quotes (`cookie-value` may be a `DQUOTE`d string); nothing is
 * percent-decoded, as RFC 6265 defines no encoding. When the name repeats, the
 * first wins: user agents send the cookie with the most specific path first
 * (§5.4 step 2).
 * @param header - the `Cookie` header; several (an array) are read as one, joined by `; `
 */
export function cookieValue (header: string | readonly string[] | undefined, name: string): string | undefined {
  if (header === undefined) return undefined
  const text = typeof header === 'string' ? header : header.join('; ')
  for (const pair of text.split(';')) {
    const eq = pair.indexOf('=')
    if (eq === -1 || pair.slice(0, eq).trim() !== name) continue
    let value = pair.slice(eq + 1).trim()
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1)
    return value
  }
  return undefined
}

/** A repeated header arrives as an array: the first occurrence counts. */
function valid (v: string | undefined): string | undefined {
  if (v === undefined) return undefined
  const s = v.trim()
  if (s === '' || s.length > MAX_SESSION_ID_LENGTH || CONTROL.test(s)) return undefined
  return s
}
