import type { ServerResponse } from 'node:http'

/**
 * Where media comes from: a directory (`ORIGIN_ROOT`, fs-origin.ts) or an
 * HTTP(S) base URL (`ORIGIN_URL`, http-origin.ts). The media route talks to
 * both through this port.
 */
export interface Origin {
  readonly kind: 'fs' | 'http'
  /**
   * Fetch one file. Never buffers a body it streams: the body is written
   * into the client's response as it arrives (a small one may be whole in
   * memory already).
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
 * The client as an HTTP origin hears of it (docs/access.md): `X-Forwarded-For`
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
  /**
   * The one abort channel: an origin that holds something worth aborting (a
   * request to an HTTP origin) calls this once, synchronously, with a
   * function that aborts the fetch and its body; the caller calls that
   * function when the client goes away, and the pending fetch then rejects.
   * Not an `AbortSignal`: a controller with a listener is a measurable share
   * of a small response's CPU
   * (docs/performance.md#why-the-code-is-shaped-this-way).
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
   * The body; `null` for HEAD and 304. It must be consumed once or destroyed
   * by the consumer.
   */
  body: PushedBody | null
  /** Body length in bytes when known (HEAD: the length a GET would have). */
  length?: number | undefined
}

/** Counts the body bytes the socket has taken (a transfer is one). */
export interface ByteCounter {
  bytes: number
}

/**
 * A response body, written into the client's response by whoever holds it,
 * chunk by chunk with backpressure, each chunk counted in its write callback
 * once the socket has taken it. Every origin answers with one: a file range
 * (file-body.ts), an HTTP origin's response as undici parses it
 * (dispatched-response.ts), a small body whole in memory (buffer-body.ts),
 * or any `Readable` through an adapter (readable-body.ts). Consume it once:
 * `sendTo`, `readAll` or `destroy`.
 */
export interface PushedBody {
  /**
   * Write the body into `res` and end it, counting each chunk in its write
   * callback (docs/metering.md: an aborted download counts what the socket
   * took). Resolves `true` once `res` finished with the whole body; `false`
   * when either side went away: client gone → the origin request is
   * aborted; origin gone → `res` is destroyed, so the client sees a
   * truncated response rather than a silently short one.
   */
  sendTo (res: ServerResponse, counter: ByteCounter): Promise<boolean>
  /**
   * The whole body; rejects with `OriginBodyTooLargeError` when it is longer
   * than `limit` bytes (the origin request is aborted), or when the origin fails.
   */
  readAll (limit: number): Promise<Buffer>
  /** Release a body that will not be read (aborts the origin request, closes the file). Idempotent. */
  destroy (): void
}
