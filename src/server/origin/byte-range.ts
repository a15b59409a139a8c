/**
 * Byte ranges (RFC 9110 §14) and the validators that gate them and 304s
 * (RFC 9110 §13.1). Pure functions: the filesystem origin answers with them;
 * the HTTP origin leaves all of this to the origin server.
 */

/** What a `Range` header asks of a representation of a given size. */
export type RangeRequest =
  | { kind: 'none' }
  | { kind: 'range', start: number, end: number }
  | { kind: 'unsatisfiable' }

const NONE: RangeRequest = Object.freeze({ kind: 'none' })
const UNSATISFIABLE: RangeRequest = Object.freeze({ kind: 'unsatisfiable' })
const INT_RANGE = /^(\d+)-(\d*)$/
const SUFFIX_RANGE = /^-(\d+)$/

/**
 * Read a `Range` header against a representation of `size` bytes.
 *
 * - `bytes=a-b`, `bytes=a-`, `bytes=-n` (RFC 9110 §14.1.2): one range, with
 *   `end` inclusive and clamped to the last byte (§14.1.1).
 * - A first position at or past the end, or a zero-length suffix, is
 *   `unsatisfiable` (416, §15.5.17).
 * - Absent, malformed, another unit, or `first > last`: `none`, i.e. serve
 *   200 in full. §14.2 lets a server ignore `Range`, and a syntactically
 *   invalid one MUST be ignored.
 * - More than one range: also `none`. Answering it properly is a
 *   `multipart/byteranges` body (§14.6) that no HLS or MP4 player asks for;
 *   building one would mean synthesising bytes the origin never sent, and
 *   many small or overlapping ranges are a known amplification vector
 *   (§17.15). A full 200 is always a correct answer to a GET.
 * - A suffix range on an empty representation is the one satisfiable form
 *   (§14.1.1), but `Content-Range` cannot express an empty range: `none`.
 */
export function parseRange (header: string | undefined, size: number): RangeRequest {
  const specs = rangeSpecs(header)
  if (specs === undefined || specs.length !== 1) return NONE
  const spec = specs[0] as string

  const int = INT_RANGE.exec(spec)
  if (int !== null) {
    const first = Number(int[1])
    const last = int[2] === '' ? Infinity : Number(int[2])
    if (last < first) return NONE
    if (first >= size) return UNSATISFIABLE
    return { kind: 'range', start: first, end: Math.min(last, size - 1) }
  }
  const suffix = SUFFIX_RANGE.exec(spec)
  if (suffix !== null) {
    const length = Number(suffix[1])
    if (length === 0) return UNSATISFIABLE
    if (size === 0) return NONE
    return { kind: 'range', start: Math.max(0, size - length), end: size - 1 }
  }
  return NONE
}

/**
 * Whether a `Range` header asks for more than one byte range. The HTTP
 * origin drops such a header rather than forward it, so that both origins
 * answer it alike: 200 in full (see {@link parseRange}).
 */
export function isMultiRange (header: string | undefined): boolean {
  const specs = rangeSpecs(header)
  return specs !== undefined && specs.length > 1
}

/** The range-specs of a `bytes=` header, or undefined for no header or another unit. */
function rangeSpecs (header: string | undefined): string[] | undefined {
  if (header === undefined) return undefined
  const eq = header.indexOf('=')
  if (eq === -1 || header.slice(0, eq).trim().toLowerCase() !== 'bytes') return undefined
  // `#` list rule (RFC 9110 §5.6.1): optional whitespace around commas, empty elements ignored.
  return header.slice(eq + 1).split(',').map((s) => s.trim()).filter((s) => s !== '')
}

/** `Content-Range` of a 206: `bytes <start>-<end>/<size>` (RFC 9110 §14.4). */
export function formatContentRange (start: number, end: number, size: number): string {
  return `bytes ${start}-${end}/${size}`
}

/** `Content-Range` of a 416: `bytes *\/<size>` (RFC 9110 §14.4, §15.5.17). */
export function formatUnsatisfiedRange (size: number): string {
  return `bytes */${size}`
}

/** A parsed `Content-Range` value. `size` is undefined for `/*` (unknown length). */
export type ContentRange =
  | { kind: 'range', start: number, end: number, size: number | undefined }
  | { kind: 'unsatisfied', size: number }

const CONTENT_RANGE = /^bytes[ \t]+(?:(\d+)-(\d+)\/(\d+|\*)|\*\/(\d+))$/i

/** Parse a `Content-Range` value (RFC 9110 §14.4); undefined when it is not one. */
export function parseContentRange (value: string | undefined): ContentRange | undefined {
  if (value === undefined) return undefined
  const m = CONTENT_RANGE.exec(value.trim())
  if (m === null) return undefined
  if (m[4] !== undefined) return { kind: 'unsatisfied', size: Number(m[4]) }
  const start = Number(m[1])
  const end = Number(m[2])
  const size = m[3] === '*' ? undefined : Number(m[3])
  if (end < start || (size !== undefined && end >= size)) return undefined
  return { kind: 'range', start, end, size }
}

/** The request's conditional headers as received. */
export interface Conditionals {
  ifNoneMatch?: string | undefined
  ifModifiedSince?: string | undefined
}

/** The current representation's validators. */
export interface Validators {
  /** An entity tag with its quotes, optionally `W/`-prefixed. */
  etag?: string | undefined
  /** Last modification, in ms since the epoch (HTTP dates have whole seconds). */
  lastModified?: number | undefined
}

interface EntityTag { weak: boolean, opaque: string }

// entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; etagc may contain commas, so a
// list is tokenised by its quotes, not split on commas (RFC 9110 §8.8.3).
const ENTITY_TAG = /(W\/)?"([^"]*)"/g

function parseEntityTag (value: string): EntityTag | undefined {
  const m = /^(W\/)?"([^"]*)"$/.exec(value.trim())
  return m === null ? undefined : { weak: m[1] !== undefined, opaque: m[2] as string }
}

function entityTags (list: string): EntityTag[] {
  const tags: EntityTag[] = []
  for (const m of list.matchAll(ENTITY_TAG)) tags.push({ weak: m[1] !== undefined, opaque: m[2] as string })
  return tags
}

/**
 * Parse an HTTP-date (RFC 9110 §5.6.7) into ms since the epoch, or
 * undefined. Recipients MUST accept IMF-fixdate and the two obsolete forms;
 * all are GMT. `Date.parse` reads them, but would take a zone-less asctime
 * date as local time and a bare number or ISO string as a date, so the
 * shape is checked first.
 */
export function parseHttpDate (value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const v = value.trim()
  let ms = NaN
  if (/^[A-Za-z]{3,9}, [\w -]+ \d\d:\d\d:\d\d GMT$/.test(v)) ms = Date.parse(v) // IMF-fixdate, RFC 850
  else if (/^[A-Za-z]{3} [A-Za-z]{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$/.test(v)) ms = Date.parse(v + ' GMT') // asctime
  return Number.isNaN(ms) ? undefined : ms
}

/** Format ms since the epoch as an IMF-fixdate (RFC 9110 §5.6.7). */
export function formatHttpDate (ms: number): string {
  return new Date(ms).toUTCString()
}

/**
 * Whether a GET/HEAD should be answered 304 Not Modified.
 *
 * `If-None-Match` takes precedence: when present, `If-Modified-Since` is not
 * looked at (RFC 9110 §13.1.3, §13.2.2 step 3–4). `If-None-Match` uses the
 * weak comparison (§13.1.2, §8.8.3.2): `W/"x"` matches `"x"`; `*` matches any
 * current representation. `If-Modified-Since` is compared at whole seconds,
 * the resolution of an HTTP date, and ignored when it is not a valid date.
 */
export function isNotModified (conditionals: Conditionals, validators: Validators): boolean {
  const { ifNoneMatch, ifModifiedSince } = conditionals
  if (ifNoneMatch !== undefined) {
    if (ifNoneMatch.trim() === '*') return true
    const current = validators.etag === undefined ? undefined : parseEntityTag(validators.etag)
    if (current === undefined) return false
    return entityTags(ifNoneMatch).some((t) => t.opaque === current.opaque)
  }
  if (ifModifiedSince !== undefined && validators.lastModified !== undefined) {
    const since = parseHttpDate(ifModifiedSince)
    if (since === undefined) return false
    return Math.floor(validators.lastModified / 1000) <= Math.floor(since / 1000)
  }
  return false
}

/**
 * Whether a `Range` may be honoured given `If-Range` (RFC 9110 §13.1.5).
 * Without `If-Range` it may. An entity tag must match by the strong
 * comparison (both strong, same opaque tag). A date must equal
 * `Last-Modified` exactly and that date must itself be strong: at least one
 * second before `now` (§8.8.2.2), since a file touched within the current
 * second may change again under the same date.
 *
 * @param now ms since the epoch @default Date.now()
 */
export function ifRangeMatches (ifRange: string | undefined, etag: string | undefined, lastModified: number | undefined, now: number = Date.now()): boolean {
  if (ifRange === undefined) return true
  const value = ifRange.trim()
  if (value.startsWith('"') || value.startsWith('W/"')) {
    const wanted = parseEntityTag(value)
    const current = etag === undefined ? undefined : parseEntityTag(etag)
    return wanted !== undefined && current !== undefined && !wanted.weak && !current.weak && wanted.opaque === current.opaque
  }
  const date = parseHttpDate(value)
  if (date === undefined || lastModified === undefined) return false
  const modifiedSecond = Math.floor(lastModified / 1000)
  return modifiedSecond === Math.floor(date / 1000) && modifiedSecond + 1 <= Math.floor(now / 1000)
}
