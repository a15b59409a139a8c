import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { NotFoundError, StreammeterError, errorBody } from '../errors.ts'
import type { TrafficCollector } from '../meter/index.ts'
import type { AdminAuth } from './admin-auth.ts'
import type { InstrumentedStore } from './instrumented-store.ts'
import type { ServerMetrics } from './metrics.ts'
import type { TransferRegistry } from './transfers.ts'

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

/**
 * `/health` (no auth) and the admin endpoints of DESIGN §5 behind
 * `ADMIN_TOKEN` (or loopback only without one). None of them shows a secret.
 */
export function registerAdminRoutes (app: FastifyInstance, ctx: AdminContext): void {
  const guarded = (handler: (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>) =>
    async (req: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
      try {
        ctx.auth.check(req.raw)
      } catch (err) {
        const e = err as StreammeterError
        if (e.statusCode === 401) reply.header('www-authenticate', 'Bearer')
        return await reply.code(e.statusCode).header('cache-control', 'no-store').send(errorBody(e))
      }
      reply.header('cache-control', 'no-store')
      return await handler(req, reply)
    }

  app.get('/health', async (_req, reply) => {
    const state = ctx.state()
    let storeOk = true
    let storeCode: string | null = null
    try {
      await withTimeout(ctx.store.outboxStats(), HEALTH_PROBE_MS)
    } catch (err) {
      storeOk = false
      storeCode = err instanceof StreammeterError ? err.code : 'SM_ERR_STORE'
    }
    const status = state !== 'running' ? 'closing' : storeOk ? 'ok' : 'degraded'
    return await reply.code(status === 'ok' ? 200 : 503).header('cache-control', 'no-store').send({
      status,
      version: ctx.version,
      worker_id: ctx.workerId,
      uptime_seconds: Math.round(process.uptime()),
      store: { kind: ctx.store.kind, ok: storeOk, error: storeCode },
      collector: ctx.collector?.state ?? 'disabled',
      active_transfers: ctx.transfers.size
    })
  })

  app.get('/traffic', guarded(async (req) => {
    if (ctx.collector === undefined) return { worker_id: ctx.workerId, running: false, enabled: false }
    const top = Number((req.query as Record<string, string>).top ?? 10)
    return await ctx.collector.status(Number.isInteger(top) && top >= 0 && top <= 1000 ? top : 10)
  }))

  app.get('/active-transfers', guarded(async () => {
    const transfers = ctx.transfers.list(Date.now())
    return { count: ctx.transfers.size, transfers }
  }))

  app.get('/metrics', guarded(async (_req, reply) => {
    const text = await ctx.metrics.registry.metrics()
    return await reply.header('content-type', ctx.metrics.registry.contentType).send(text)
  }))

  app.get('/monitor', guarded(async (_req, reply) => {
    return await reply.code(404).send(errorBody(new NotFoundError('the dashboard is not part of this build yet')))
  }))
}

function withTimeout<T> (p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_resolve, reject) => { timer = setTimeout(() => reject(new Error('timeout')), ms) })
  ])
}
