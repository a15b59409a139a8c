import type { ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import type { ByteCounter } from './stream-body.ts'

/**
 * Where media comes from: a directory (`ORIGIN_ROOT`, fs-origin.ts) or an
 * HTTP(S) base URL (`ORIGIN_URL`, http-origin.ts). The media route talks to
 * both through this port.
 */
export interface Origin {
  readonly kind: 'fs' | 'http'
  /**
   * Fetch one file. Never buffers a body it streams: `body` is a stream to be
   * piped, or for a small body already in memory (a small file, a cached
   * one) a Buffer written in one call.
   * @throws {NotFoundError} 404 — no such file (also for anything that would escape the root)
   * @throws {RangeNotSatisfiableError} 416 — with the file size when known
   * @throws {OriginUnreachableError} 502, {OriginTimeoutError} 504, {OriginError} 502
   */
  fetch (request: OriginRequest): Promise<OriginResponse>
  /** Release pools and handles. Idempotent. */
  close (): Promise<void>
}

/** The conditional and range headers the origin honours (lower-case names). */
export interface ForwardedHeaders {
  range?: string | undefined
  'if-range'?: string | undefined
  'if-none-match'?: string | undefined
  'if-modified-since'?: string | undefined
  'if-match'?: string | undefined
  'if-unmodified-since'?: string | undefined
  'accept-encoding'?: string | undefined
  'user-agent'?: string | undefined
}

/**
 * The client as an HTTP origin hears of it (DESIGN §4): `X-Forwarded-For`
 * and `X-Forwarded-Proto`. The route fills it; what the headers say is the
 * origin's business (http-origin.ts, forwarding.ts).
 */
export interface ForwardedClient {
  /** The socket peer, as the socket reports it (an IPv4 peer of a dual-stack socket as `::ffff:…`). */
  address: string
  /**
   * `X-Forwarded-For` as received, only when the peer is a trusted proxy
   * (`TRUSTED_PROXIES`): from anyone else the chain may be forged.
   */
  forwardedFor?: string | undefined
  /** `X-Forwarded-Proto` as received, only from a trusted proxy. */
  proto?: string | undefined
}

/** One origin fetch. */
export interface OriginRequest {
  /** URL-decoded path without the leading slash, already validated (no NUL, no `.`/`..`/empty segments, no backslash). */
  path: string
  method: 'GET' | 'HEAD'
  headers: ForwardedHeaders
  /**
   * The request's query string as received, without the `?` (undefined or
   * `''` for none). An HTTP origin gets it without streammeter's own
   * parameters (`uid`, `expires`, `token`, `sid`, `scope`, `ip`), so that
   * LL-HLS `_HLS_msn`/`_HLS_part` and the origin's own parameters work; the
   * filesystem origin ignores it.
   */
  query?: string | undefined
  /** Who asked, for an HTTP origin's `X-Forwarded-*`; without it none are sent. The filesystem origin ignores it. */
  client?: ForwardedClient | undefined
  /**
   * Fetch the whole current representation, ignoring range and conditional
   * headers (playlists are rewritten, so they are always fetched whole and
   * answered 200 in full).
   */
  whole?: boolean | undefined
  /** Aborted when the client goes away: the origin request must be destroyed. */
  signal?: AbortSignal | undefined
  /**
   * A lighter alternative to `signal` for the hot path: an origin that holds
   * something worth aborting (a request to an HTTP origin) calls this once,
   * synchronously, with a function that aborts the fetch and its body. The
   * caller calls that function when the client goes away.
   */
  onAbortable?: ((abort: (reason: Error) => void) => void) | undefined
}

/** What the origin answered, ready to be sent on. */
export interface OriginResponse {
  /** 200, 206 or 304 (errors are thrown, see {@link Origin.fetch}). */
  status: number
  /**
   * Response headers to pass to the client, lower-case: the origin's
   * end-to-end fields (an HTTP origin's, less hop-by-hop ones, `Set-Cookie`
   * and CORS, see origin-response-headers.ts; a file's validators and type),
   * with streammeter's own `Cache-Control`.
   */
  headers: Record<string, string>
  /**
   * The body; `null` for HEAD and 304. A stream or a pushed body must be
   * consumed or destroyed by the consumer; a Buffer is a small body whole in
   * memory.
   */
  body: Readable | Buffer | PushedBody | null
  /** Body length in bytes when known (HEAD: the length a GET would have). */
  length?: number | undefined
}

/**
 * A body its origin writes into the client's response itself, chunk by
 * chunk as it arrives, with backpressure (the HTTP origin: see
 * dispatched-response.ts). Consume it once: `sendTo`, `readAll` or `destroy`.
 */
export interface PushedBody {
  /**
   * Write the body into `res` and end it, counting each chunk in its write
   * callback (DESIGN §2). Resolves `true` once `res` finished with the whole
   * body; `false` when either side went away: client gone → the origin
   * request is aborted; origin gone → `res` is destroyed, so the client sees
   * a truncated response rather than a silently short one.
   */
  sendTo (res: ServerResponse, counter: ByteCounter): Promise<boolean>
  /** The whole body; rejects when it is longer than `limit` bytes (the request is aborted) or the origin fails. */
  readAll (limit: number): Promise<Buffer>
  /** Release a body that will not be read (aborts the origin request). */
  destroy (): void
}

/** Whether `body` is a {@link PushedBody}. */
export function isPushedBody (body: Readable | Buffer | PushedBody): body is PushedBody {
  return typeof (body as Partial<PushedBody>).sendTo === 'function'
}
