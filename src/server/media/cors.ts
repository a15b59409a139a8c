import type { IncomingMessage, ServerResponse } from 'node:http'

const EXPOSE = 'Content-Length, Content-Range, Accept-Ranges, X-Session-ID'
const ALLOW_HEADERS = 'Range, If-None-Match, If-Modified-Since, If-Range, X-Session-ID'

/**
 * CORS for browser players (docs/access.md#cors): `Access-Control-Allow-Origin` from
 * `CORS_ORIGINS` (`*` by default; never with credentials), exposing the
 * headers a player needs for ranged reads. Written by hand: three headers on
 * the raw response of a hijacked media route.
 */
export class CorsPolicy {
  readonly #any: boolean
  readonly #origins: ReadonlySet<string>

  /** @param origins `['*']` or exact origins such as `https://player.example` */
  constructor (origins: readonly string[]) {
    this.#any = origins.includes('*')
    this.#origins = new Set(origins.map((o) => o.toLowerCase()))
  }

  /** Set the CORS response headers for `req`'s Origin, if allowed. */
  apply (req: IncomingMessage, res: ServerResponse): void {
    const vary = res.getHeader('vary')
    const fields = vary === undefined ? [] : ['vary', Array.isArray(vary) ? vary.join(', ') : String(vary)]
    this.addTo(req, fields)
    for (let i = 0; i < fields.length; i += 2) res.setHeader(fields[i] as string, fields[i + 1] as string)
  }

  /**
   * Add the CORS response fields for `req`'s Origin to `fields`, a flat
   * name/value list for `res.writeHead()` (lower-case names), adding
   * `Origin` to the `vary` it holds when the answer depends on it.
   */
  addTo (req: IncomingMessage, fields: string[]): void {
    if (this.#any) {
      fields.push('access-control-allow-origin', '*', 'access-control-expose-headers', EXPOSE)
      return
    }
    let vary = -1
    for (let i = 0; i < fields.length && vary === -1; i += 2) if (fields[i] === 'vary') vary = i
    if (vary === -1) fields.push('vary', 'Origin')
    else fields[vary + 1] = withOrigin(fields[vary + 1] as string)
    const origin = req.headers.origin
    if (origin === undefined || !this.#origins.has(origin.toLowerCase())) return
    fields.push('access-control-allow-origin', origin, 'access-control-expose-headers', EXPOSE)
  }

  /** Answer a preflight (OPTIONS) request: 204 with the allowed methods and headers. */
  preflight (req: IncomingMessage, res: ServerResponse): void {
    this.apply(req, res)
    res.statusCode = 204
    res.setHeader('access-control-allow-methods', 'GET, HEAD, OPTIONS')
    res.setHeader('access-control-allow-headers', ALLOW_HEADERS)
    res.setHeader('access-control-max-age', '600')
    res.setHeader('content-length', '0')
    res.end()
  }
}

/** `Vary` already naming `Origin`, or `*` (which covers every field). */
const COVERS_ORIGIN = /(?:^|,)\s*(?:origin|\*)\s*(?:,|$)/i

/**
 * The answer's `Vary` with `Origin` added: the CORS headers depend on it,
 * and the origin's own fields (say `Accept-Encoding`) must stay, or a cache
 * would serve one representation for another (RFC 9110 §12.5.5).
 */
function withOrigin (vary: string): string {
  if (vary.trim() === '') return 'Origin'
  return COVERS_ORIGIN.test(vary) ? vary : `${vary}, Origin`
}
