import type { FastifyInstance, FastifyRequest } from 'fastify'
import { BearerToken } from '../../bearer-token.ts'
import { ForbiddenError, StreammeterError, UnauthorizedError } from '../../errors.ts'
import { refuse } from './admin-routes.ts'

/** What a route of the access API is given: the JSON body (an object, else empty) and the query. */
export interface AccessApiInput {
  body: Record<string, unknown>
  query: Record<string, unknown>
}

/** Registers one route of the access API; `answer` gives the JSON answer, or an error to refuse with. */
export type AccessApiRoute = (
  method: 'GET' | 'POST' | 'DELETE',
  url: string,
  bodyLimit: number,
  answer: (input: AccessApiInput) => Promise<unknown> | StreammeterError
) => void

/**
 * The routes behind `ACCESS_API_KEY` (docs/access.md#file-checks,
 * #grants): the key checked (Bearer, or the bare key as the Python proxy
 * took it; constant time), `Cache-Control: no-store`, errors as JSON.
 * Without the setting every route answers 403; with a wrong key 401 and
 * `WWW-Authenticate: Bearer`.
 */
export function accessApi (app: FastifyInstance, apiKey: string | undefined): AccessApiRoute {
  const key = apiKey === undefined ? undefined : new BearerToken(apiKey)
  const guard = (req: FastifyRequest): StreammeterError | undefined => {
    if (key === undefined) return new ForbiddenError('the access API is off: set ACCESS_API_KEY')
    return key.matchesBearerOrBare(req.headers.authorization) ? undefined : new UnauthorizedError('a valid ACCESS_API_KEY is required (Authorization: Bearer <key>)')
  }
  return (method, url, bodyLimit, answer) => {
    app.route({
      method,
      url,
      bodyLimit,
      handler: async (req, reply) => {
        reply.header('cache-control', 'no-store')
        const refused = guard(req)
        if (refused instanceof UnauthorizedError) reply.header('www-authenticate', 'Bearer')
        if (refused !== undefined) return await refuse(reply, refused)
        const result = answer({ body: objectOf(req.body), query: objectOf(req.query) })
        return result instanceof StreammeterError ? await refuse(reply, result) : await result
      }
    })
  }
}

function objectOf (value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? value as Record<string, unknown> : {}
}
