import { createServer } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { EnginePeers } from '../access/peer.ts'
import type { OwnPaths } from './own-paths.ts'

type Handler = (req: IncomingMessage, res: ServerResponse) => void

/** Fastify's defaults for the server it would make itself (keep-alive in ms; 0 = no limit). */
const KEEP_ALIVE_TIMEOUT_MS = 72_000

/** Options of {@link createHttpServer}. */
export interface HttpServerOptions {
  /**
   * Ms within which a request's headers must have arrived, from the first
   * byte of the request (or from the connection, for the first request);
   * then 408 and the connection is closed (docs/limits.md#requests: slowloris).
   * @default 30000
   */
  headersTimeout?: number | undefined
  /** The nginx engine's: requests from its nginx name the client's address (peer.ts). */
  peers?: EnginePeers | undefined
}

/**
 * The node:http server under Fastify (its `serverFactory`), with a direct
 * path for media requests: a plain `GET`/`HEAD /path` that is not one of the
 * server's own (`ownPaths`, built from the registered routes) goes straight to `media`, everything else to Fastify. The media route
 * hijacks the reply and works on the raw request anyway, so Fastify's
 * routing, request and reply objects and per-request child logger were pure
 * cost on the hot path (docs/performance.md#why-the-code-is-shaped-this-way).
 *
 * Paths with a `%` go through Fastify: its router decodes them, and a
 * percent-encoded admin path must still reach the admin route, never the
 * origin. Fastify's own media route (the same handler) serves them, and any
 * request made with `inject()`.
 */
export function createHttpServer (fastifyHandler: Handler, media: Handler, ownPaths: OwnPaths, options: HttpServerOptions = {}): Server {
  const isDirect = (req: IncomingMessage): boolean => {
    const method = req.method
    if (method !== 'GET' && method !== 'HEAD') return false
    const url = req.url ?? ''
    if (url.charCodeAt(0) !== 0x2f /* / */) return false
    const q = url.indexOf('?')
    const path = q === -1 ? url : url.slice(0, q)
    return !path.includes('%') && !ownPaths.has(path)
  }
  const headersTimeout = options.headersTimeout ?? 30_000
  // Node enforces headersTimeout from a periodic sweep over the connections
  // (every 30 s by default, so a slowloris could last twice the timeout);
  // a sweep is a walk of a list in C++, cheap at this rate.
  const peers = options.peers
  const server = createServer({ connectionsCheckingInterval: Math.max(10, Math.min(1000, headersTimeout / 4)) }, (req, res) => {
    peers?.adopt(req)
    if (isDirect(req)) media(req, res)
    else fastifyHandler(req, res)
  })
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS
  // Checked on Node 20.20: with requestTimeout 0, headersTimeout still
  // applies on its own (the sweep tests each limit that is non-zero), to a
  // connection that sends nothing as well as to one that dribbles header
  // lines, and never to a response being streamed (its headers completed)
  // or to an idle keep-alive connection (keepAliveTimeout's business).
  // requestTimeout stays 0: it would cut a long download mid-body. A client
  // that stops reading is the send timeout's business (send-timeout.ts).
  server.headersTimeout = headersTimeout
  server.requestTimeout = 0
  server.setTimeout(0)
  return server
}
