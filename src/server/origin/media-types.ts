import type { FileType } from '../../meter/index.ts'

/** Content type of anything not listed in {@link CONTENT_TYPES}. */
export const DEFAULT_CONTENT_TYPE = 'application/octet-stream'

/**
 * Content types by lower-case extension. HLS names from RFC 8216 §4 and
 * Apple's registrations; segment types from their IANA registrations
 * (`video/iso.segment`, `video/mp2t`); fonts from RFC 8081; JavaScript from
 * RFC 9239. Text types carry their charset so that browsers do not sniff.
 */
const CONTENT_TYPES: Readonly<Record<string, string>> = Object.freeze(Object.assign(Object.create(null) as Record<string, string>, {
  m3u8: 'application/vnd.apple.mpegurl',
  m3u: 'audio/mpegurl',
  mpd: 'application/dash+xml',
  ts: 'video/mp2t',
  m4s: 'video/iso.segment',
  mp4: 'video/mp4',
  m4v: 'video/mp4',
  m4a: 'audio/mp4',
  aac: 'audio/aac',
  mp3: 'audio/mpeg',
  vtt: 'text/vtt; charset=utf-8',
  key: 'application/octet-stream',
  json: 'application/json',
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  avif: 'image/avif',
  svg: 'image/svg+xml',
  ico: 'image/vnd.microsoft.icon',
  css: 'text/css; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  mjs: 'text/javascript; charset=utf-8',
  woff: 'font/woff',
  woff2: 'font/woff2',
  ttf: 'font/ttf',
  otf: 'font/otf',
  html: 'text/html; charset=utf-8',
  htm: 'text/html; charset=utf-8',
  txt: 'text/plain; charset=utf-8'
}))

/** Every extension with its content type (the nginx engine renders them as its `types`). */
export function contentTypes (): Readonly<Record<string, string>> {
  return CONTENT_TYPES
}

/** Extensions metered as `static` (docs/access.md#identity: images, css, js, fonts). */
const STATIC_EXTENSIONS = new Set(['png', 'jpg', 'jpeg', 'gif', 'webp', 'avif', 'svg', 'ico', 'css', 'js', 'mjs', 'woff', 'woff2', 'ttf', 'otf'])

/** Extensions that are their own file type. */
const OWN_TYPES = new Set<FileType>(['m3u8', 'ts', 'm4s', 'mp4', 'vtt', 'aac'])

/** Lower-case extension of the last path segment, without the dot; `''` for none (and for dotfiles, as `path.extname`). */
export function extensionOf (path: string): string {
  const name = path.slice(path.lastIndexOf('/') + 1)
  const dot = name.lastIndexOf('.')
  return dot <= 0 ? '' : name.slice(dot + 1).toLowerCase()
}

/** `Content-Type` for a path, by extension; {@link DEFAULT_CONTENT_TYPE} when unknown. */
export function contentTypeOf (path: string): string {
  return CONTENT_TYPES[extensionOf(path)] ?? DEFAULT_CONTENT_TYPE
}

/**
 * The meter's file type of a path (docs/access.md#identity). Keys are `.key` files,
 * which covers the `…enc.key` naming of common packagers; a file named
 * exactly `.key` counts too.
 */
export function fileTypeOf (path: string): FileType {
  const name = path.slice(path.lastIndexOf('/') + 1).toLowerCase()
  if (name.endsWith('.key')) return 'key'
  const ext = extensionOf(path)
  if (OWN_TYPES.has(ext as FileType)) return ext as FileType
  if (STATIC_EXTENSIONS.has(ext)) return 'static'
  return 'default'
}

/**
 * `Cache-Control` for a file type. Everything is `private`: every byte this
 * proxy serves is metered per user and, with signing on, authorised per
 * URL; a shared cache in front of it would serve other users unmetered and,
 * if it keys on the path alone, unsigned. The browser's own cache is fine:
 * a byte it does not fetch again is a byte not transferred.
 *
 * - `m3u8`: `private, no-cache` — a live playlist changes every target
 *   duration and the client must reload it (RFC 8216 §6.3.4), and a
 *   rewritten one carries tokens for one user. `no-cache` still lets a
 *   client revalidate a VOD playlist with its ETag.
 * - `key`: `private, no-store` — content keys (`EXT-X-KEY`, RFC 8216 §4.3.2.4) are
 *   secrets; no cache should keep them on disk.
 * - segments (`ts`, `m4s`, `aac`, `vtt`) and `mp4`: `private, max-age=86400`
 *   — packagers write new media under new URIs, so a segment URI names
 *   immutable content (a live window slides, its segments do not change).
 *   One day rather than a year, because a progressive MP4 may be replaced
 *   in place; its ETag makes the revalidation cheap.
 * - `static`: `private, max-age=3600` — player assets are edited in place on
 *   deploys.
 * - anything else: `private, no-cache` — unknown content (a DASH manifest,
 *   JSON) may change at any time.
 */
export function cacheControlFor (fileType: FileType): string {
  switch (fileType) {
    case 'key': return 'private, no-store'
    case 'ts':
    case 'm4s':
    case 'aac':
    case 'vtt':
    case 'mp4': return 'private, max-age=86400'
    case 'static': return 'private, max-age=3600'
    case 'm3u8':
    default: return 'private, no-cache'
  }
}
