import type { ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import {
  BadRequestError, HeadersTooLargeError, InternalError, RangeNotSatisfiableError, RequestTimeoutError, StreammeterError, errorBody
} from '../errors.ts'

/**
 * Answer with the JSON error of docs/errors.md. Anything that is not one of our
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

/**
 * node:http's `clientError` (Fastify's `clientErrorHandler`): a request that
 * never became one — headers too slow (408), too large (431) or malformed
 * (400) — answered in our JSON shape on the raw socket, which is then closed.
 * Replaces Fastify's default, whose body has another shape.
 */
export function sendClientError (err: Error & { code?: string }, socket: Duplex): void {
  // A reset connection has nobody to answer (as Fastify's default does).
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const e = err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
    ? new RequestTimeoutError()
    : err.code === 'HPE_HEADER_OVERFLOW' ? new HeadersTooLargeError() : new BadRequestError('malformed request')
  const body = JSON.stringify(errorBody(e))
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${e.statusCode} ${STATUS_TEXT[e.statusCode] ?? ''}\r\nContent-Type: application/json; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n${body}`)
  }
  socket.destroy()
}

const STATUS_TEXT: Readonly<Record<number, string>> = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' }
