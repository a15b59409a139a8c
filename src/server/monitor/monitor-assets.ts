import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

/** One file of the dashboard, held in memory. */
export interface MonitorAsset {
  readonly body: Buffer
  readonly contentType: string
  /** A strong validator of the body (RFC 9110 §8.8.3). */
  readonly etag: string
  readonly cacheControl: string
}

/** The page itself, served at `/monitor`. */
export const MONITOR_PAGE = 'monitor.html'

/** The dashboard's own files (`web/`), two levels above this file in `src/` and in `dist/`. */
const WEB_ROOT = fileURLToPath(new URL('../../../web/', import.meta.url))

const OWN: Record<string, string> = {
  [MONITOR_PAGE]: 'text/html; charset=utf-8',
  'monitor.css': 'text/css; charset=utf-8',
  'monitor.js': 'text/javascript; charset=utf-8',
  'favicon.svg': 'image/svg+xml'
}

/** Third-party browser code, from node_modules (runtime dependencies), under the names the page uses. */
const VENDOR: Record<string, { module: string, contentType: string }> = {
  'uPlot.esm.js': { module: 'uplot/dist/uPlot.esm.js', contentType: 'text/javascript; charset=utf-8' },
  'uPlot.min.css': { module: 'uplot/dist/uPlot.min.css', contentType: 'text/css; charset=utf-8' },
  'hls.mjs': { module: 'hls.js/dist/hls.min.mjs', contentType: 'text/javascript; charset=utf-8' }
}

// Own files may change with a deploy under the same name: revalidate each
// time (a 304 is cheap). Vendor files change only with a dependency update.
// `private`: they sit behind the admin guard, so no shared cache keeps them.
const OWN_CACHE = 'private, no-cache'
const VENDOR_CACHE = 'private, max-age=86400'

let loaded: ReadonlyMap<string, MonitorAsset> | undefined

/**
 * Every file the dashboard loads, read from disk once per process (the first
 * call) and then served from memory: about 0.8 MB. Throws at start, not on a
 * request, when a file is missing (a broken install).
 */
export function monitorAssets (): ReadonlyMap<string, MonitorAsset> {
  if (loaded !== undefined) return loaded
  const require = createRequire(import.meta.url)
  const assets = new Map<string, MonitorAsset>()
  for (const [name, contentType] of Object.entries(OWN)) {
    assets.set(name, asset(readFileSync(WEB_ROOT + name), contentType, OWN_CACHE))
  }
  for (const [name, v] of Object.entries(VENDOR)) {
    assets.set(name, asset(readFileSync(require.resolve(v.module)), v.contentType, VENDOR_CACHE))
  }
  loaded = assets
  return assets
}

function asset (body: Buffer, contentType: string, cacheControl: string): MonitorAsset {
  const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`
  return { body, contentType, etag, cacheControl }
}
