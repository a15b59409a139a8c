import { OriginError } from '../../errors.ts'
import type { FileType } from '../../meter/index.ts'
import { cacheControlFor } from './media-types.ts'

/**
 * Which of an HTTP origin's response fields reach the client (docs/access.md#requests):
 * every end-to-end field, except
 *
 * - hop-by-hop fields (RFC 9110 §7.6.1) and any field the origin's
 *   `Connection` names: they describe the origin's connection, not ours;
 * - `Set-Cookie`: the origin's cookies would land on the proxy's domain,
 *   next to streammeter's own session cookie;
 * - what streammeter sets itself: CORS (`Access-Control-*`, cors.ts) and
 *   `Cache-Control`, with the targeted fields that override it for CDNs
 *   (`CDN-Cache-Control`, RFC 9213; `Surrogate-Control`). A rewritten
 *   playlist's `Content-Length` is set by the media route.
 *
 * Why streammeter replaces an origin's `Cache-Control` rather than keep it:
 * every byte it serves is metered per user and, with signing on, authorised
 * per URL. An origin's `public, max-age=60`, passed on, lets a shared cache
 * in front of the proxy serve the next user unmetered and unsigned: billing
 * and access control both depend on the answer being `private`
 * (media-types.ts `cacheControlFor`). Only one directive of the origin's is
 * kept: `no-store` (the answer is then `private, no-store`), since relaxing
 * it would store what the owner said must not be stored.
 */

/** Hop-by-hop fields (RFC 9110 §7.6.1), plus `proxy-connection` and `keep-alive` from older practice. */
export const HOP_BY_HOP: readonly string[] = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade']

/** Never passed on: hop-by-hop, cookies, and the caching fields streammeter decides itself. */
const DROPPED: ReadonlySet<string> = new Set([...HOP_BY_HOP, 'set-cookie', 'cache-control', 'cdn-cache-control', 'surrogate-control'])

/** Fields whose value the proxy relies on: two different ones mean nobody knows which is true. */
const EXACTLY_ONE: ReadonlySet<string> = new Set(['content-length', 'content-range', 'content-type', 'etag', 'last-modified'])

/** Single dates and numbers (RFC 9110 §6.6.1, RFC 9111 §5.1, §5.3): joined they would be neither; the first counts. */
const FIRST_ONLY: ReadonlySet<string> = new Set(['date', 'age', 'expires'])

/**
 * The response fields to pass on, lower-case, one string each, with
 * streammeter's `Cache-Control` for `fileType`.
 * @throws {OriginError} when the origin sent two different values of a
 *   field the proxy relies on (Content-Length, ETag…)
 */
export function passedHeaders (raw: Record<string, string | string[] | undefined>, fileType: FileType): Record<string, string> {
  const named = raw.connection === undefined ? undefined : connectionOptions(raw.connection)
  const out: Record<string, string> = {}
  for (const name in raw) {
    const value = raw[name]
    if (value === undefined || DROPPED.has(name) || name.startsWith('access-control-') || named?.has(name) === true) continue
    if (!Array.isArray(value)) {
      out[name] = value
    } else if (EXACTLY_ONE.has(name)) {
      if (new Set(value).size !== 1) throw new OriginError(undefined, { cause: new Error(`origin sent conflicting ${name} fields`) })
      out[name] = value[0] as string
    } else if (FIRST_ONLY.has(name)) {
      out[name] = value[0] as string
    } else {
      // Field lines of one name combine into one comma-separated value
      // (RFC 9110 §5.3); Set-Cookie, the exception, is not passed on.
      out[name] = value.join(', ')
    }
  }
  out['cache-control'] = noStore(raw['cache-control']) ? 'private, no-store' : cacheControlFor(fileType)
  return out
}

/** Connection-named fields, lower-case (RFC 9110 §7.6.1). */
function connectionOptions (value: string | string[]): Set<string> {
  const names = new Set<string>()
  for (const v of Array.isArray(value) ? value : [value]) {
    for (const token of v.split(',')) names.add(token.trim().toLowerCase())
  }
  return names
}

/** Whether a `Cache-Control` value holds the `no-store` directive (RFC 9111 §5.2.2.5). */
function noStore (value: string | string[] | undefined): boolean {
  if (value === undefined) return false
  return /(?:^|,)\s*no-store\s*(?:,|$)/i.test(Array.isArray(value) ? value.join(',') : value)
}
