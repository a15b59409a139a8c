import type { FastifyInstance } from 'fastify'
import { BadRequestError, NotFoundError, ReportNotParkedError } from '../../errors.ts'
import { outboxView } from '../../meter/index.ts'
import type { UsageStore } from '../../meter/index.ts'
import type { AdminAuth } from './admin-auth.ts'
import { adminGuard, refuse } from './admin-routes.ts'

/** What the outbox endpoints use. */
export interface OutboxRoutesContext {
  auth: AdminAuth
  store: UsageStore
}

/** Longest report id accepted in a request (ids are UUIDs; this only bounds garbage). */
const MAX_REPORT_ID = 256

/**
 * The outbox admin API (docs/endpoints.md#the-outbox-api), behind the admin guard:
 * `GET /api/outbox` lists pending and parked reports without their bodies,
 * with the outbox figures; `POST /api/outbox/retry` puts parked reports back
 * at the head of delivery, unchanged (`{"report_id": "…"}` or `{"all": true}`).
 * Anything else under `/api/` is a JSON 404: never the media route.
 */
export function registerOutboxRoutes (app: FastifyInstance, ctx: OutboxRoutesContext): void {
  const guarded = adminGuard(ctx.auth)

  app.route({
    method: ['GET', 'HEAD'],
    url: '/api/outbox',
    handler: guarded(async () => {
      const [stats, items] = await Promise.all([ctx.store.outboxStats(), ctx.store.outboxList()])
      return outboxView(stats, items, Date.now())
    })
  })

  app.route({
    method: 'POST',
    url: '/api/outbox/retry',
    handler: guarded(async (req, reply) => {
      const target = retryTarget(req.body)
      if (target instanceof BadRequestError) return await refuse(reply, target)
      const retried = await ctx.store.outboxRetry(target)
      if (typeof target === 'string' && retried.length === 0) {
        const pending = (await ctx.store.outboxList()).some((e) => e.reportId === target)
        return await refuse(reply, pending ? new ReportNotParkedError(target) : new NotFoundError('no report with that id in the outbox'))
      }
      if (retried.length > 0) req.log.info({ reportIds: retried }, 'parked reports put back at the head of delivery')
      return { retried }
    })
  })

  // Everything under /api/ is the server's own: an unknown path is a 404
  // here, never a file of the origin (this route puts `/api/` among the
  // server's own paths, media/own-paths.ts).
  app.route({
    method: ['GET', 'HEAD'],
    url: '/api/*',
    handler: async (_req, reply) => await refuse(reply, new NotFoundError())
  })
}

/** The report id, or every parked report, a retry body names; a BadRequestError for anything else. */
function retryTarget (body: unknown): string | { all: true } | BadRequestError {
  const usage = new BadRequestError('the body must be {"report_id": "<id>"} or {"all": true}')
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return usage
  const fields = body as Record<string, unknown>
  const keys = Object.keys(fields)
  if (keys.length !== 1) return usage
  if (keys[0] === 'all') return fields.all === true ? { all: true } : usage
  const id = fields.report_id
  return typeof id === 'string' && id.length > 0 && id.length <= MAX_REPORT_ID ? id : usage
}
