import Fastify, { LogController } from 'fastify'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import type { IncomingMessage, ServerResponse } from 'node:http'
import {
  BadRequestError, MethodNotAllowedError, NotFoundError, ShuttingDownError
} from '../errors.ts'
import type { TrafficCollector, UsageStore } from '../meter/index.ts'
import { VERSION } from '../version.ts'
import { AdminAuth } from './admin/admin-auth.ts'
import type { AdminAccess } from './admin/admin-auth.ts'
import { registerAdminRoutes } from './admin/admin-routes.ts'
import { Authorizer } from './access/authorize.ts'
import { ClientIpResolver } from './access/client-ip.ts'
import { EnginePeers } from './access/peer.ts'
import { CorsPolicy } from './media/cors.ts'
import { sendClientError, sendError } from './error-reply.ts'
import { createHttpServer } from './media/http-server.ts'
import { InstrumentedStore } from './admin/instrumented-store.ts'
import { serveMedia } from './media/media-route.ts'
import { OwnPaths } from './media/own-paths.ts'
import { MeteringInput } from './metering/metering-input.ts'
import type { MediaContext } from './media/media-route.ts'
import { ServerMetrics } from './admin/metrics.ts'
import type { MonitorEvents } from './monitor/monitor-events.ts'
import { registerMonitorRoutes } from './monitor/monitor-routes.ts'
import { DeniedLog } from './access/denials.ts'
import { registerDeniedRoute } from './admin/denied-route.ts'
import { registerFileCheckRoutes } from './admin/file-check-routes.ts'
import { DEFAULT_SESSION_SETTINGS, registerWhitelistRoutes } from './admin/whitelist-routes.ts'
import type { SessionSettings } from './admin/whitelist-routes.ts'
import { AccessState } from './access/access-state.ts'
import { SessionIds } from './access/sessions.ts'
import type { AccessStore } from '../store/access-store.ts'
import { registerOutboxRoutes } from './admin/outbox-routes.ts'
import type { ThroughputHistory } from './monitor/throughput-history.ts'
import type { Origin } from './origin/origin.ts'
import { SendTimeout } from './media/send-timeout.ts'
import { TransferRegistry } from './media/transfers.ts'
import { TransfersPerIp } from './media/transfers-per-ip.ts'
import { UnsignedChildLog } from './media/unsigned-children.ts'

/** Everything the HTTP server is built from. The app owns them and closes them in order. */
export interface AppOptions {
  origin: Origin
  store: UsageStore
  /** Built over `store`; undefined when `TRAFFIC_COLLECTOR_ENABLED=false`. */
  collector: (store: UsageStore) => TrafficCollector | undefined
  /** `SIGNING_SECRET`; without it the `uid` parameter is trusted. */
  signingSecret?: string | undefined
  /** `TRUSTED_PROXIES` as CIDRs or addresses. @default [] */
  trustedProxies?: readonly string[] | undefined
  /** `ACCESS_ALLOW_CIDRS` (docs/access.md#allowed-networks). @default [] */
  accessAllowCidrs?: readonly string[] | undefined
  /** `ACCESS_OPEN_EXTENSIONS`, lower-case without the dot (docs/access.md#open-extensions). @default [] */
  accessOpenExtensions?: readonly string[] | undefined
  /** `ACCESS_API_KEY`: the access API's key (docs/access.md#file-checks); without it that API answers 403. */
  accessApiKey?: string | undefined
  /**
   * Where grants, sessions and use counts live (docs/access.md#sessions).
   * @default the store's own (`store.access`), which every store has
   */
  accessStore?: AccessStore | undefined
  /** `SESSION_TTL`, `GRANT_TTL` (seconds), `GRANT_MAX_PER_UID`, `GRANT_MAX_PATHS_PER_NETWORK`. @default 7200, 3600, 5, 3 */
  sessions?: Partial<SessionSettings> | undefined
  /** `KEY_MAX_USES`, `PLAYLIST_MAX_USES` (docs/access.md#use-limits). @default none */
  useLimits?: { key?: number | undefined, playlist?: number | undefined } | undefined
  /** `CORS_ORIGINS`. @default ['*'] */
  corsOrigins?: readonly string[] | undefined
  /**
   * `ADMIN_TOKEN`; without it admin endpoints answer loopback clients only,
   * and nobody when `trustedProxies` covers a loopback address.
   */
  adminToken?: string | undefined
  /**
   * `SEND_TIMEOUT` in seconds: a client that takes no bytes for this long
   * while some wait for it is disconnected. @default 60
   */
  sendTimeout?: number | undefined
  /** `MAX_TRANSFERS_PER_IP`: concurrent media requests per client IP; beyond, 429. @default 64 */
  maxTransfersPerIp?: number | undefined
  /** `PLAYLIST_MAX_BYTES`: the largest origin playlist rewritten; a larger one is a 502. @default 1048576 */
  playlistMaxBytes?: number | undefined
  /**
   * `PUBLIC_HOSTS`: host[:port] names clients reach the proxy by. Absolute
   * playlist URIs on them are signed like relative ones; with none, absolute
   * URIs are left as written. @default []
   */
  publicHosts?: readonly string[] | undefined
  /** `SHUTDOWN_GRACE` in seconds. @default 30 */
  shutdownGrace?: number | undefined
  /** A pino logger (Fastify's `loggerInstance`). @default silent */
  logger?: FastifyBaseLogger | undefined
  /**
   * Seconds within which a request's headers must arrive: 30, fixed by
   * docs/limits.md#requests (not a setting; tests shorten it). @default 30
   */
  headersTimeout?: number | undefined
  /** `worker_id` shown by `/health`. */
  workerId?: string | undefined
  /**
   * The nginx engine's (docs/engines.md): nginx meters everything it sends
   * from its access log, the playlists it passes on from here included, so
   * this app's media route meters nothing; requests carrying this key name
   * the client's address (access/peer.ts); and the dashboard says it cannot
   * see transfers, with `bytesSent` (bytes of the responses nginx finished)
   * for its throughput chart. Undefined: the node engine.
   */
  nginx?: { peerKey: string, bytesSent: () => number } | undefined
}

/** The built server, not yet listening. */
export interface App {
  readonly fastify: FastifyInstance
  readonly collector: TrafficCollector | undefined
  readonly store: UsageStore
  readonly metrics: ServerMetrics
  readonly transfers: TransferRegistry
  /** The paths the server answers itself, from its registered routes: never proxied. */
  readonly ownPaths: OwnPaths
  /** The `/monitor` dashboard's throughput sampler and live feed. */
  readonly monitor: { readonly history: ThroughputHistory, readonly events: MonitorEvents }
  /** Refused media requests (docs/access.md#denials); the nginx engine adds those of its log. */
  readonly denials: DeniedLog
  /** Who the admin endpoints answer: `closed` when `TRUSTED_PROXIES` covers loopback and no `ADMIN_TOKEN` is set. */
  readonly adminAccess: AdminAccess
  /** `running` until `close()` is called. */
  readonly state: AppState
  /**
   * Resolves when no media request is in flight. A response is metered when
   * it closes, which can be a moment after the client has read its last byte.
   */
  idle (): Promise<void>
  /**
   * Graceful stop in the order docs/metering.md#rules gives: stop accepting (503 for requests on
   * open connections) → let streams finish within the grace (then cut them) →
   * record them → flush → seal → deliver within what is left → close the
   * store and the origin. Idempotent.
   */
  close (): Promise<void>
}

/** Life of the server; changed in one place. */
export type AppState = 'running' | 'closing' | 'closed'

/** How long a closing server waits for clients to hang up after the last response, in ms. */
const LINGER_MS = 2000

/** Build the Fastify app with the media route and the admin endpoints. */
export function buildApp (options: AppOptions): App {
  const graceMs = Math.round((options.shutdownGrace ?? 30) * 1000)
  let handleMedia: (req: IncomingMessage, res: ServerResponse) => void = () => {}
  const transfers = new TransferRegistry()
  // Every route but the media route's own is a path the server answers
  // itself: the direct media path never takes it to the origin.
  const ownPaths = new OwnPaths()
  const fastify = Fastify({
    ...(options.logger !== undefined ? { loggerInstance: options.logger } : { logger: false }),
    // Request lines carry signed URLs: the route logs what it needs, redacted.
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: false,
    exposeHeadRoutes: false,
    bodyLimit: 1024,
    routerOptions: { maxParamLength: 4096 },
    // Media requests skip Fastify (see http-server.ts); handleMedia is set below.
    serverFactory: (handler) => createHttpServer(handler, (req, res) => handleMedia(req, res), ownPaths, {
      headersTimeout: options.headersTimeout === undefined ? undefined : options.headersTimeout * 1000,
      peers: options.nginx === undefined ? undefined : new EnginePeers(options.nginx.peerKey)
    }),
    // Slow, oversized or malformed request heads: our JSON shape, not Fastify's.
    clientErrorHandler: sendClientError,
    // A malformed URL or a framework-level failure is a client error with our JSON shape.
    frameworkErrors: (err, _req, reply) => {
      reply.hijack()
      sendError(reply.raw, new BadRequestError(err.code === 'FST_ERR_BAD_URL' ? 'malformed URL' : 'malformed request'))
    }
  })
  fastify.addHook('onRoute', (route) => {
    if ((route.config as { media?: boolean } | undefined)?.media !== true) ownPaths.add(route.url)
  })
  const metrics = new ServerMetrics(transfers)
  const store = new InstrumentedStore(options.store, metrics.storeLatency)
  const collector = options.collector(store)
  if (collector !== undefined) metrics.watch(collector)
  const ips = new ClientIpResolver([...(options.trustedProxies ?? [])])
  // The node engine's side of the metering input: its live transfers.
  const metering = collector === undefined || options.nginx !== undefined ? undefined : new MeteringInput(collector, Date.now)
  metering?.watch(() => transfers.settled())
  const sessions = { ...DEFAULT_SESSION_SETTINGS, ...options.sessions }
  const accessStore = options.accessStore ?? (options.store as { access?: AccessStore }).access
  // Sessions and grants need a key to make session ids from, and a store.
  const key = options.signingSecret ?? options.accessApiKey
  let sessionWarnedAt = 0
  const accessState = key === undefined || accessStore === undefined
    ? undefined
    : new AccessState({
      store: accessStore,
      ids: new SessionIds(key),
      sessionTtl: sessions.sessionTtl,
      now: Date.now,
      // Once a minute at most: with the store down, every turn of the event loop would say it.
      onWriteError: (err) => {
        if (Date.now() - sessionWarnedAt < 60_000) return
        sessionWarnedAt = Date.now()
        fastify.log.warn({ err }, 'sessions could not be written to the store (said once a minute at most)')
      }
    })
  accessState?.start()
  const ctx: MediaContext = {
    origin: options.origin,
    access: new Authorizer({
      signingSecret: options.signingSecret,
      locked: options.accessApiKey !== undefined,
      allowedNetworks: options.accessAllowCidrs,
      openExtensions: options.accessOpenExtensions,
      ips,
      state: accessState,
      grants: options.accessApiKey !== undefined,
      useLimits: options.useLimits,
      now: Date.now
    }),
    sessionTtl: sessions.sessionTtl,
    tellsUid: options.nginx !== undefined,
    metering,
    signingSecret: options.signingSecret,
    ips,
    cors: new CorsPolicy(options.corsOrigins ?? ['*']),
    transfers,
    perIp: new TransfersPerIp(options.maxTransfersPerIp ?? 64),
    playlistMaxBytes: options.playlistMaxBytes ?? 1024 * 1024,
    publicHosts: new Set((options.publicHosts ?? []).map((h) => h.toLowerCase())),
    unsignedChildren: new UnsignedChildLog(fastify.log),
    metrics,
    denials: new DeniedLog({ onDenial: (reason) => { metrics.countDenial(reason) } }),
    now: Date.now
  }

  const sendTimeout = new SendTimeout(transfers, {
    timeout: (options.sendTimeout ?? 60) * 1000,
    onTimeout: () => metrics.countLimitHit('send_timeout')
  })
  sendTimeout.start()

  let state: AppState = 'running'
  const setState = (next: AppState): void => { state = next }
  let inflight = 0
  let idleWaiters: Array<() => void> = []
  const requestDone = (): void => {
    if (--inflight === 0) for (const w of idleWaiters.splice(0)) w()
  }
  const allDone = (): Promise<void> => inflight === 0 ? Promise.resolve() : new Promise((resolve) => idleWaiters.push(resolve))

  // While closing, every request is answered 503 and its connection closed.
  const refused = (res: ServerResponse): boolean => {
    if (state === 'running') return false
    res.setHeader('connection', 'close')
    sendError(res, new ShuttingDownError())
    return true
  }
  // `/health` answers for itself while closing (503 `{status:"closing"}`):
  // a load balancer reads the status field.
  fastify.addHook('onRequest', (req, reply, done) => {
    if (req.routeOptions.url === '/health' || !refused(reply.raw)) return done()
    reply.hijack()
  })

  const admin = {
    auth: new AdminAuth(options.adminToken, ips.coversLoopback),
    collector,
    store,
    metrics,
    transfers,
    version: VERSION,
    workerId: options.workerId ?? collector?.options.workerId ?? `pid-${process.pid}`,
    state: () => state
  }
  registerAdminRoutes(fastify, admin)
  registerOutboxRoutes(fastify, admin)
  registerFileCheckRoutes(fastify, { apiKey: options.accessApiKey, origin: options.origin })
  registerWhitelistRoutes(fastify, { apiKey: options.accessApiKey, state: accessState, settings: sessions, now: Date.now })
  registerDeniedRoute(fastify, { auth: admin.auth, denials: ctx.denials })
  const monitor = registerMonitorRoutes(fastify, {
    ...admin, origin: options.origin, signingSecret: options.signingSecret, bytesSent: options.nginx?.bytesSent, denials: ctx.denials
  })

  // The media route: straight from the server for plain paths, through
  // Fastify's catch-all route for the rest (see http-server.ts).
  handleMedia = (req, res) => {
    if (refused(res)) return
    inflight++
    serveMedia(req, res, ctx).catch((err: unknown) => {
      fastify.log.error({ err }, 'media route failed')
    }).finally(requestDone)
  }
  fastify.route({
    method: ['GET', 'HEAD'],
    url: '/*',
    config: { media: true },
    handler: (req, reply) => {
      reply.hijack()
      handleMedia(req.raw, reply.raw)
    }
  })
  fastify.route({
    method: 'OPTIONS',
    url: '/*',
    config: { media: true },
    handler: (req, reply) => {
      reply.hijack()
      ctx.cors.preflight(req.raw, reply.raw)
    }
  })
  fastify.setNotFoundHandler((req, reply) => {
    reply.hijack()
    const m = req.raw.method ?? ''
    const err = m !== 'GET' && m !== 'HEAD' && m !== 'OPTIONS'
      ? new MethodNotAllowedError(m)
      : (req.raw.url ?? '').startsWith('/') ? new NotFoundError() : new BadRequestError('request target must be a path')
    if (err instanceof MethodNotAllowedError) reply.raw.setHeader('allow', 'GET, HEAD, OPTIONS')
    sendError(reply.raw, err)
  })
  fastify.setErrorHandler((err, req, reply) => {
    reply.hijack()
    // Fastify's own 4xx (a body on OPTIONS, an unsupported content type…)
    // are client errors in our shape; anything else is logged and hidden.
    const status = (err as { statusCode?: unknown }).statusCode
    if (typeof status === 'number' && status >= 400 && status < 500) {
      sendError(reply.raw, new BadRequestError('request not accepted'))
      return
    }
    req.log.error({ err }, 'request failed')
    sendError(reply.raw, err)
  })

  let closing: Promise<void> | undefined
  const close = (): Promise<void> => {
    closing ??= (async () => {
      const deadline = Date.now() + graceMs
      setState('closing')
      const log = fastify.log
      // Stops listening and closes idle keep-alive connections; resolves once
      // every connection has ended.
      const serverClosed = fastify.close()
      const drained = await Promise.race([allDone().then(() => true), sleep(deadline - Date.now()).then(() => false)])
      if (!drained) {
        log.warn({ transfers: transfers.size }, 'shutdown grace over: cutting the remaining transfers')
        fastify.server.closeAllConnections()
        await allDone() // aborted responses record what their sockets took
      }
      // Responses are complete, but a client may still be reading the tail of
      // one from its socket buffer; closing its keep-alive connection at once
      // can make it report a truncated response (undici, for one, treats a
      // FIN that arrives while it is paused before the end of a message as a
      // cut). Give clients a moment to finish and hang up, then close the rest.
      await Promise.race([serverClosed, sleep(Math.min(LINGER_MS, deadline - Date.now()))])
      fastify.server.closeAllConnections()
      await serverClosed
      try {
        // Flush → seal → deliver within what is left of the grace (at least 1 s).
        await collector?.close({ grace: Math.max(1, (deadline - Date.now()) / 1000) })
      } finally {
        // The sessions opened last are written before the store closes.
        await accessState?.stop().catch((err: unknown) => log.error({ err }, 'writing the last sessions failed'))
        await store.close().catch((err: unknown) => log.error({ err }, 'closing the store failed'))
        await options.origin.close().catch((err: unknown) => log.error({ err }, 'closing the origin failed'))
        idleWaiters = []
        sendTimeout.stop()
        setState('closed')
      }
    })()
    return closing
  }

  return {
    fastify,
    collector,
    store,
    metrics,
    transfers,
    ownPaths,
    monitor,
    denials: ctx.denials,
    adminAccess: admin.auth.access,
    get state () { return state },
    idle: allDone,
    close
  }
}

function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)).unref())
}
