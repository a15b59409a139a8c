import { BadRequestError, NotFoundError } from '../../errors.ts'

/**
 * Longest accepted media path, in bytes of its decoded UTF-8 form (what is
 * signed and looked up). Linux's PATH_MAX is 4096; no media tree needs half.
 */
export const MAX_PATH_BYTES = 2048

/** The two raw parts of a request target, both still percent-encoded. */
export interface RequestTarget {
  /** Everything before the first `?` (origin-form: starts with `/`). */
  rawPath: string
  /** Everything after the first `?`, without it; `''` when there is none. */
  rawQuery: string
}

const ABSOLUTE_FORM = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i

/**
 * Split a request target (`req.url`) into its raw path and query.
 *
 * A fragment is not part of a request target (RFC 9112 §3.2), so a `#` is
 * left in place for {@link parseMediaPath} to refuse rather than silently
 * cut. The absolute form (`http://host/p?q`), which RFC 9112 §3.2.2 says a
 * server MUST accept, is reduced to its path and query.
 */
export function splitTarget (url: string): RequestTarget {
  let target = url
  if (!target.startsWith('/')) {
    const m = ABSOLUTE_FORM.exec(target)
    if (m !== null) {
      target = target.slice(m[0].length)
      if (!target.startsWith('/')) target = '/' + target
    }
  }
  const q = target.indexOf('?')
  return q === -1
    ? { rawPath: target, rawQuery: '' }
    : { rawPath: target.slice(0, q), rawQuery: target.slice(q + 1) }
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })
// C0 controls, DEL and C1 controls: never part of a media file name, and a
// log-injection or terminal-escape vector when a path is logged.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/ // eslint-disable-line no-control-regex

/**
 * Decode and validate the raw path of a media request (docs/access.md#requests).
 *
 * Returns the URL-decoded path without its leading slash: the string that
 * is signed (`P` of the signed URL) and handed to the origin. Everything
 * that could step out of the origin root, or mean two different files to
 * two different components, is refused with a 400 rather than normalised:
 * `%2f`/`%5c` (an encoded separator that a decoder upstream or downstream
 * might treat as a real one), a backslash (a separator on Windows origins),
 * NUL (truncates paths in C APIs), `.`/`..`/empty segments (also when
 * percent-encoded, as `%2e%2e`), control characters, a raw `#` (a
 * fragment has no place in a request target, RFC 9112 §3.2, and the client
 * that signed the URL would not have signed it), malformed
 * percent-encoding or UTF-8 (RFC 3986 §2.1, RFC 3629), and paths longer than
 * {@link MAX_PATH_BYTES}.
 *
 * A segment that starts with `.` (`.env`, `.git/config`, `.htpasswd`) is a
 * 404 (docs/limits.md#requests), before any signature check or origin request: dotfiles
 * are where credentials and repositories live next to media, never media
 * themselves, and a 404 does not tell a prober that they exist.
 *
 * Node's HTTP parser hands `req.url` over as latin1, so a client that sends
 * raw (unencoded) UTF-8 bytes shows up as chars U+0080–U+00FF: those are
 * taken as the bytes they are and decoded with the `%XX` ones. A char above
 * U+00FF cannot have come off the wire and is refused.
 *
 * @throws {BadRequestError} with a fixed message that does not echo the path
 * @throws {NotFoundError} for a dotfile or a path through a dot directory
 */
export function parseMediaPath (rawPath: string): string {
  if (!rawPath.startsWith('/')) throw new BadRequestError('the path must start with /')
  // Each decoded byte takes at most 3 raw chars: a longer raw path is too long decoded.
  if (rawPath.length > 3 * MAX_PATH_BYTES + 1) throw new BadRequestError('the path is too long')

  const bytes = Buffer.allocUnsafe(rawPath.length)
  let n = 0
  for (let i = 1; i < rawPath.length; i++) {
    const c = rawPath.charCodeAt(i)
    if (c === 0x25) { // '%'
      const byte = hexByte(rawPath, i + 1)
      if (byte < 0) throw new BadRequestError('malformed percent-encoding in the path')
      if (byte === 0x2f || byte === 0x5c) throw new BadRequestError('encoded slash or backslash in the path')
      if (byte === 0) throw new BadRequestError('NUL in the path')
      bytes[n++] = byte
      i += 2
    } else if (c === 0x5c) {
      throw new BadRequestError('backslash in the path')
    } else if (c === 0) {
      throw new BadRequestError('NUL in the path')
    } else if (c === 0x23) {
      throw new BadRequestError('the path must be percent-encoded')
    } else if (c > 0xff) {
      throw new BadRequestError('the path must be percent-encoded')
    } else {
      bytes[n++] = c
    }
  }
  if (n > MAX_PATH_BYTES) throw new BadRequestError('the path is too long')

  let path: string
  try {
    path = utf8.decode(bytes.subarray(0, n))
  } catch {
    throw new BadRequestError('the path is not valid UTF-8')
  }
  if (CONTROL.test(path)) throw new BadRequestError('control character in the path')
  let hidden = false
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.' || segment === '..') {
      throw new BadRequestError('empty, . or .. segment in the path')
    }
    if (segment.charCodeAt(0) === 0x2e /* . */) hidden = true
  }
  // After the loop: a path with both a `..` and a dotfile is still a 400.
  if (hidden) throw new NotFoundError()
  return path
}

/** The byte of the two hex digits at `at`, or -1. */
function hexByte (s: string, at: number): number {
  if (at + 2 > s.length) return -1
  const hi = hexDigit(s.charCodeAt(at))
  const lo = hexDigit(s.charCodeAt(at + 1))
  return hi < 0 || lo < 0 ? -1 : (hi << 4) | lo
}

function hexDigit (c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30
  const lower = c | 0x20
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10
  return -1
}
