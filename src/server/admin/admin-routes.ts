import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { StreammeterError, errorBody } from '../../errors.ts'
import type { TrafficCollector } from '../../meter/index.ts'
import type { AdminAuth } from './admin-auth.ts'
import type { InstrumentedStore } from './instrumented-store.ts'
import type { ServerMetrics } from './metrics.ts'
import { probeStore } from './store-probe.ts'
import type { TransferRegistry } from '../media/transfers.ts'

/** What the admin endpoints read. */
export interface AdminContext {
  auth: AdminAuth
  collector: TrafficCollector | undefined
  store: InstrumentedStore
  metrics: ServerMetrics
  transfers: TransferRegistry
  version: string
  workerId: string
  state: () => string
}

/** A store probe slower than this makes `/health` report the store as failing. */
const HEALTH_PROBE_MS = 2000

/** A route handler. */
export type AdminHandler = (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>

/** Options of {@link adminGuard}. */
export interface AdminGuardOptions {
  /** Accept HTTP Basic too, and challenge with it (the dashboard). @default false */
  basic?: boolean
  /** Headers for every answer, the refusals included (the dashboard's security headers). @default {} */
  headers?: Record<string, string>
}

/**
 * Wrap a handler so that it runs only for a client {@link AdminAuth} lets in;
 * others get 401 (with a `WWW-Authenticate` challenge) or 403 in the JSON
 * error shape. Answers are never cached.
 */
/** Answer `err` in the JSON error shape with its status. */
export async function refuse (reply: FastifyReply, err: StreammeterError): Promise<unknown> {
  return await reply.code(err.statusCode).send(errorBody(err))
}

export function adminGuard (auth: AdminAuth, options: AdminGuardOptions = {}): (handler: AdminHandler) => AdminHandler {
  const challenge = options.basic === true ? 'Basic realm="streammeter", charset="UTF-8"' : 'Bearer'
  return (handler) => async (req, reply) => {
    reply.headers({ ...options.headers, 'cache-control': 'no-store' })
    try {
      auth.check(req.raw, { basic: options.basic === true })
    } catch (err) {
      const e = err as StreammeterError
      if (e.statusCode === 401) reply.header('www-authenticate', challenge)
      return await refuse(reply, e)
    }
    return await handler(req, reply)
  }
}

/**
 * `/health` (no auth; more detail for admins) and the admin endpoints of docs/endpoints.md behind
 * `ADMIN_TOKEN` (or loopback only without one). None of them shows a secret.
 */
export function registerAdminRoutes (app: FastifyInstance, ctx: AdminContext): void {
  const guarded = adminGuard(ctx.auth)
  // HEAD too: the media route answers GET and HEAD of every other path, and
  // an admin path must never reach it (Fastify adds no HEAD routes here).
  const get = (url: string, handler: AdminHandler): void => { app.route({ method: ['GET', 'HEAD'], url, handler }) }

  // docs/endpoints.md#health: `degraded` (the store is down, the proxy still serves and
  // meters into memory) is a 200, so that a load balancer does not pull a
  // working proxy; only a stopping one answers 503. Anyone may ask, so the
  // answer is the state only; host, pid, version and counts are for admins.
  get('/health', async (req, reply) => {
    const state = ctx.state()
    const probe = await probeStore(ctx.store, HEALTH_PROBE_MS)
    const status = state !== 'running' ? 'closing' : probe.ok ? 'ok' : 'degraded'
    const collector = ctx.collector?.state ?? 'disabled'
    reply.code(status === 'closing' ? 503 : 200).header('cache-control', 'no-store')
    if (status === 'closing') reply.header('connection', 'close')
    if (!ctx.auth.allows(req.raw)) {
      return await reply.send({ status, store: { ok: probe.ok, error: probe.error, ...durabilityOf(ctx.store) }, collector })
    }
    return await reply.send({
      status,
      version: ctx.version,
      worker_id: ctx.workerId,
      uptime_seconds: Math.round(process.uptime()),
      store: { kind: ctx.store.kind, ok: probe.ok, error: probe.error, ...durabilityOf(ctx.store) },
      collector,
      active_transfers: ctx.transfers.size
    })
  })

  get('/traffic', guarded(async (req) => {
    if (ctx.collector === undefined) return { worker_id: ctx.workerId, running: false, enabled: false }
    const top = Number((req.query as Record<string, string>).top ?? 10)
    return await ctx.collector.status(Number.isInteger(top) && top >= 0 && top <= 1000 ? top : 10)
  }))

  get('/active-transfers', guarded(async () => {
    const transfers = ctx.transfers.list(Date.now())
    return { count: ctx.transfers.size, transfers }
  }))

  get('/metrics', guarded(async (_req, reply) => {
    const text = await ctx.metrics.registry.metrics()
    return await reply.header('content-type', ctx.metrics.registry.contentType).send(text)
  }))
}

/**
 * `/health`'s word on durability (docs/report-format.md#durable-seals): whether a restart of the store
 * can lose or re-bill the last window, and a short code saying how or why.
 * The code never names a host or a version. Stores that say nothing about
 * it (memory, SQLite: a seal commits with synchronous FULL) add nothing.
 */
function durabilityOf (store: InstrumentedStore): { durable?: boolean, durability?: string } {
  const d = store.durability
  return d === undefined ? {} : { durable: d.durable, durability: d.code }
}
