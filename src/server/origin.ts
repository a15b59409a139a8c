import type { Readable } from 'node:stream'

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

/** One origin fetch. */
export interface OriginRequest {
  /** URL-decoded path without the leading slash, already validated (no NUL, no `.`/`..`/empty segments, no backslash). */
  path: string
  method: 'GET' | 'HEAD'
  headers: ForwardedHeaders
  /**
   * Fetch the whole current representation, ignoring range and conditional
   * headers (playlists are rewritten, so they are always fetched whole and
   * answered 200 in full).
   */
  whole?: boolean | undefined
  /** Aborted when the client goes away: the origin request must be destroyed. */
  signal?: AbortSignal | undefined
}

/** What the origin answered, ready to be sent on. */
export interface OriginResponse {
  /** 200, 206 or 304 (errors are thrown, see {@link Origin.fetch}). */
  status: number
  /**
   * Response headers to pass to the client, lower-case, hop-by-hop headers
   * already removed: content-type, content-length, content-range, etag,
   * last-modified, accept-ranges, cache-control, content-encoding, vary, expires.
   */
  headers: Record<string, string>
  /**
   * The body; `null` for HEAD and 304. A stream must be read or destroyed by
   * the consumer; a Buffer is a small body whole in memory.
   */
  body: Readable | Buffer | null
  /** Body length in bytes when known (HEAD: the length a GET would have). */
  length?: number | undefined
}
