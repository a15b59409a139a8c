import type { FastifyInstance, FastifyReply } from 'fastify'
import { NotFoundError, errorBody } from '../../errors.ts'
import type { TrafficCollector } from '../../meter/index.ts'
import type { AdminAuth } from '../admin/admin-auth.ts'
import { adminGuard } from '../admin/admin-routes.ts'
import type { AdminHandler } from '../admin/admin-routes.ts'
import type { InstrumentedStore } from '../admin/instrumented-store.ts'
import type { ServerMetrics } from '../admin/metrics.ts'
import { MONITOR_PAGE, monitorAssets } from './monitor-assets.ts'
import type { MonitorAsset } from './monitor-assets.ts'
import { demoLink } from './monitor-demo.ts'
import { MonitorEvents } from './monitor-events.ts'
import type { DeniedLog } from '../access/denials.ts'
import { buildMonitorSnapshot } from './monitor-snapshot.ts'
import type { Origin } from '../origin/origin.ts'
import { ThroughputHistory } from './throughput-history.ts'
import type { TransferRegistry } from '../media/transfers.ts'

/** What the dashboard reads. */
export interface MonitorContext {
  auth: AdminAuth
  collector: TrafficCollector | undefined
  store: InstrumentedStore
  metrics: ServerMetrics
  transfers: TransferRegistry
  origin: Origin
  signingSecret: string | undefined
  version: string
  workerId: string
  state: () => string
  /**
   * The nginx engine's: bytes of the responses nginx finished, for the
   * throughput chart. Its transfers are nginx's, invisible here: the
   * snapshot says so. Undefined: the node engine's own transfers.
   */
  bytesSent?: (() => number) | undefined
  /** Refused media requests, for the dashboard's panel. */
  denials?: DeniedLog | undefined
}

/**
 * The page's policy (CSP Level 3): only its own files, no inline script or
 * style element, no eval, never framed. `blob:` media because hls.js plays
 * through Media Source Extensions (the video's source is a blob: URL of a
 * MediaSource); hls.js runs without its worker, so no worker source at all.
 */
export const MONITOR_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "media-src 'self' blob:",
  "connect-src 'self'",
  "worker-src 'none'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'"
].join('; ')

/** Sent with every answer under `/monitor`, refusals included. */
const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': MONITOR_CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-resource-policy': 'same-origin'
}

/**
 * The `/monitor` dashboard (docs/endpoints.md#monitor, docs/dashboard.md): the page and its
 * files, a JSON document, its live feed (SSE) and the demo player's URL, all
 * behind the admin guard, which here also takes HTTP Basic (the browser
 * prompts once and sends the credentials with the page's requests). Starts
 * the 1 s throughput sampler; both it and the feed stop when Fastify closes,
 * before it waits for connections, so an open dashboard never delays a
 * graceful shutdown.
 */
export function registerMonitorRoutes (app: FastifyInstance, ctx: MonitorContext): { history: ThroughputHistory, events: MonitorEvents } {
  const assets = monitorAssets()
  const guarded = adminGuard(ctx.auth, { basic: true, headers: SECURITY_HEADERS })
  const get = (url: string, handler: AdminHandler): void => { app.route({ method: ['GET', 'HEAD'], url, handler: guarded(handler) }) }

  const history = new ThroughputHistory({
    bytesTaken: ctx.bytesSent ?? (() => ctx.transfers.bytesTaken()),
    requestCounts: () => ctx.metrics.requestCounts()
  })
  history.start()
  const snapshot = (historyAfter?: number, top?: number) => buildMonitorSnapshot({ ...ctx, history }, { historyAfter, top })
  const events = new MonitorEvents((after) => snapshot(after))
  app.addHook('preClose', (done) => {
    events.close()
    history.close()
    done()
  })

  const page = assets.get(MONITOR_PAGE)!
  get('/monitor', async (req, reply) => await sendAsset(reply, page, req.headers['if-none-match']))
  get('/monitor/', async (req, reply) => await sendAsset(reply, page, req.headers['if-none-match']))
  get('/monitor/assets/:name', async (req, reply) => {
    const name = (req.params as { name: string }).name
    const asset = name === MONITOR_PAGE ? undefined : assets.get(name)
    if (asset === undefined) return await reply.code(404).send(errorBody(new NotFoundError()))
    return await sendAsset(reply, asset, req.headers['if-none-match'])
  })
  get('/monitor/api/snapshot', async (req) => {
    const top = Number((req.query as Record<string, string>).top ?? 10)
    return await snapshot(undefined, Number.isInteger(top) && top >= 0 && top <= 100 ? top : 10)
  })
  get('/monitor/api/events', async (req, reply) => {
    reply.hijack()
    events.attach(req.raw, reply.raw, SECURITY_HEADERS)
  })
  get('/monitor/api/demo', async () => await demoLink(ctx.origin, ctx.signingSecret, Date.now()))
  // Anything else under /monitor/ is ours too: never handed to the media route.
  get('/monitor/*', async (_req, reply) => await reply.code(404).send(errorBody(new NotFoundError())))
  return { history, events }
}

function sendAsset (reply: FastifyReply, asset: MonitorAsset, ifNoneMatch: string | undefined): FastifyReply {
  reply.header('etag', asset.etag).header('cache-control', asset.cacheControl)
  if (ifNoneMatch !== undefined && ifNoneMatch.split(',').some((tag) => tag.trim() === asset.etag)) {
    return reply.code(304).send()
  }
  return reply.header('content-type', asset.contentType).send(asset.body)
}
