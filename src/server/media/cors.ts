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
    if (this.#any) {
      res.setHeader('access-control-allow-origin', '*')
    } else {
      res.setHeader('vary', withOrigin(res.getHeader('vary')))
      const origin = req.headers.origin
      if (origin === undefined || !this.#origins.has(origin.toLowerCase())) return
      res.setHeader('access-control-allow-origin', origin)
    }
    res.setHeader('access-control-expose-headers', EXPOSE)
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
function withOrigin (vary: string | number | string[] | undefined): string {
  if (vary === undefined) return 'Origin'
  const value = Array.isArray(vary) ? vary.join(', ') : String(vary)
  if (value.trim() === '') return 'Origin'
  return COVERS_ORIGIN.test(value) ? value : `${value}, Origin`
}
