import { createServer } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'

type Handler = (req: IncomingMessage, res: ServerResponse) => void

/** Fastify's defaults for the server it would make itself (keep-alive in ms; 0 = no limit). */
const KEEP_ALIVE_TIMEOUT_MS = 72_000

/**
 * The node:http server under Fastify (its `serverFactory`), with a direct
 * path for media requests: a plain `GET`/`HEAD /path` that is not an admin
 * path goes straight to `media`, everything else to Fastify. The media route
 * hijacks the reply and works on the raw request anyway, so Fastify's
 * routing, request and reply objects and per-request child logger were pure
 * cost on the hot path (about 5 % of the CPU of a 4 KiB response, profiled).
 *
 * Paths with a `%` go through Fastify: its router decodes them, and a
 * percent-encoded admin path must still reach the admin route, never the
 * origin. Fastify's own media route (the same handler) serves them, and any
 * request made with `inject()`.
 */
export function createHttpServer (fastifyHandler: Handler, media: Handler, adminPaths: readonly string[]): Server {
  const admin = new Set(adminPaths)
  const prefixes = adminPaths.filter((p) => p.endsWith('/'))
  const isDirect = (req: IncomingMessage): boolean => {
    const method = req.method
    if (method !== 'GET' && method !== 'HEAD') return false
    const url = req.url ?? ''
    if (url.charCodeAt(0) !== 0x2f /* / */) return false
    const q = url.indexOf('?')
    const path = q === -1 ? url : url.slice(0, q)
    if (path.includes('%') || admin.has(path)) return false
    for (const prefix of prefixes) if (path.startsWith(prefix)) return false
    return true
  }
  const server = createServer((req, res) => {
    if (isDirect(req)) media(req, res)
    else fastifyHandler(req, res)
  })
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS
  server.requestTimeout = 0
  server.setTimeout(0)
  return server
}
