import type { FastifyInstance } from 'fastify'
import { BadRequestError } from '../../errors.ts'
import type { DeniedLog } from '../access/denials.ts'
import type { AdminAuth } from './admin-auth.ts'
import { adminGuard, refuse } from './admin-routes.ts'

/**
 * `GET /api/access-log/denied[?limit=N]` (docs/access.md#denials), behind
 * the admin guard: the most recent refused media requests, newest first,
 * and the counts by reason since start. No token, query or uid is kept.
 */
export function registerDeniedRoute (app: FastifyInstance, ctx: { auth: AdminAuth, denials: DeniedLog }): void {
  app.route({
    method: ['GET', 'HEAD'],
    url: '/api/access-log/denied',
    handler: adminGuard(ctx.auth)(async (req, reply) => {
      const raw = (req.query as Record<string, unknown>).limit
      const limit = raw === undefined ? ctx.denials.capacity : typeof raw === 'string' && /^[0-9]{1,6}$/.test(raw) ? Number(raw) : NaN
      if (!Number.isSafeInteger(limit)) {
        return await refuse(reply, new BadRequestError(`limit must be a whole number from 0 to ${ctx.denials.capacity}`))
      }
      return { capacity: ctx.denials.capacity, counts: ctx.denials.counts(), denied: ctx.denials.recent(Math.min(limit, ctx.denials.capacity)) }
    })
  })
}
