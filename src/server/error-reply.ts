import type { ServerResponse } from 'node:http'
import { InternalError, RangeNotSatisfiableError, StreammeterError, errorBody } from '../errors.ts'

/**
 * Answer with the JSON error of DESIGN §4. Anything that is not one of our
 * errors becomes a generic 500: no stack, no upstream message reaches a client.
 */
export function sendError (res: ServerResponse, err: unknown): void {
  const e = err instanceof StreammeterError ? err : new InternalError({ cause: err })
  const body = JSON.stringify(errorBody(e))
  res.statusCode = e.statusCode
  // Drop whatever a half-built answer had set (content-length of the media, ranges…).
  for (const name of ['content-length', 'content-range', 'content-encoding', 'etag', 'last-modified', 'accept-ranges', 'cache-control']) res.removeHeader(name)
  res.setHeader('content-type', 'application/json; charset=utf-8')
  res.setHeader('content-length', Buffer.byteLength(body))
  res.setHeader('cache-control', 'no-store')
  if (e instanceof RangeNotSatisfiableError && e.size !== undefined) res.setHeader('content-range', `bytes */${e.size}`)
  res.end(res.req?.method === 'HEAD' ? undefined : body)
}
