import { fstat, read } from 'node:fs'
import type { BigIntStats } from 'node:fs'
import { OriginError, RangeNotSatisfiableError, ShuttingDownError, StreammeterError } from '../../errors.ts'
import { formatContentRange, formatHttpDate, ifRangeMatches, isNotModified, parseRange } from './byte-range.ts'
import { BufferBody } from './buffer-body.ts'
import { FileBody } from './file-body.ts'
import { ConfinedFiles, call, closeFd, fsError } from './fs-confinement.ts'
import { cacheControlFor, contentTypeOf, fileTypeOf } from './media-types.ts'
import type { Origin, OriginRequest, OriginResponse } from './origin.ts'
import { PathCache } from './path-cache.ts'

/** Settings of {@link FsOrigin}. */
export interface FsOriginOptions {
  /**
   * Bytes per read of a body larger than `bufferMax` (see {@link FileBody}).
   * Each read is a trip through libuv's thread pool, hence 256 KiB rather
   * than the 64 KiB of Node's file streams: fewer, larger reads cost far
   * less CPU per byte (docs/performance.md#why-the-code-is-shaped-this-way).
   * A response in flight holds one chunk.
   * @default 262144
   */
  chunkSize?: number | undefined
  /**
   * Bodies of at most this many bytes (a small file, or a small range of any
   * file) are read whole into a Buffer with positioned reads instead of being
   * streamed: no stream objects, and one read instead of a read plus a read
   * to end of file. Bounds the memory a response holds, as the stream's
   * high-water mark does.
   * @default 65536
   */
  bufferMax?: number | undefined
  /**
   * Request paths whose confinement check is remembered (see
   * {@link PathCache}); 0 turns the cache off. Each entry holds a little
   * heap, so this bounds the cache's memory
   * (docs/performance.md#why-the-code-is-shaped-this-way).
   * @default 16384
   */
  pathCacheSize?: number | undefined
  /**
   * How long (ms) a confinement check is trusted before it is done again in
   * full; see the class comment for what a hit still checks and what this
   * bounds. Longer saves more full checks and widens those bounds.
   * @default 2000
   */
  pathCacheTtl?: number | undefined
  /** Clock in ms since the epoch (Last-Modified is clamped to it; If-Range dates use it). @default Date.now */
  now?: (() => number) | undefined
  /** Monotonic clock in ms for the path cache's TTL. @default performance.now */
  monotonicNow?: (() => number) | undefined
}

/** What a request gets of a file of a given state, before any byte is read. */
type Plan =
  | { kind: 'done', response: OriginResponse }
  | { kind: 'read', status: number, headers: Record<string, string>, start: number, length: number, toEof: boolean }

/**
 * Serves files from a directory (`ORIGIN_ROOT`, docs/access.md#requests) with the
 * validators, ranges and conditionals of RFC 9110.
 *
 * Confinement and the path cache: see {@link ConfinedFiles}.
 *
 * Bodies: a small one (≤ `bufferMax`) is read into a Buffer with one
 * positioned read and returned whole (no stream objects, and no second read
 * to find the end of the file); a larger one is written from the
 * descriptor in chunks by a {@link FileBody}, never buffered whole. All file system calls go through the
 * callback API on raw descriptors: `fs/promises` wraps each descriptor in a
 * FileHandle (a native object tracked for GC), costs more CPU per call, and
 * its read stream awaits a promise per chunk. What these choices and the
 * path cache save, measured: docs/performance.md#why-the-code-is-shaped-this-way.
 *
 * Validators: a strong ETag `"<size hex>-<mtime ms hex>"` (as nginx: it
 * changes whenever a rewrite changes the size or the mtime, and being the
 * same on every replica holding the same file, it survives a load balancer;
 * the inode would not) and `Last-Modified`. Strong because If-Range requires
 * the strong comparison (RFC 9110 §13.1.5): a weak tag would turn every
 * resumed download into a full one.
 */
export class FsOrigin implements Origin {
  readonly kind = 'fs'
  readonly #chunkSize: number
  readonly #bufferMax: number
  readonly #now: () => number
  readonly #files: ConfinedFiles
  #closed = false

  /**
   * @param root the directory to serve; relative to the working directory if not absolute
   */
  constructor (root: string, options: FsOriginOptions = {}) {
    this.#chunkSize = options.chunkSize ?? 256 * 1024
    this.#bufferMax = options.bufferMax ?? 64 * 1024
    this.#now = options.now ?? Date.now
    this.#files = new ConfinedFiles(root, new PathCache({
      maxEntries: options.pathCacheSize ?? 16_384,
      ttl: options.pathCacheTtl ?? 2000,
      now: options.monotonicNow ?? performance.now.bind(performance)
    }))
  }

  /**
   * What the path cache did: entries held, requests whose file was accepted
   * through a remembered check, and full checks run (first requests,
   * expired entries, and hits that fell back).
   */
  get pathCacheStats (): { entries: number, hits: number, fullChecks: number } {
    return this.#files.stats
  }

  /** {@inheritDoc Origin.fetch} */
  async fetch (request: OriginRequest): Promise<OriginResponse> {
    if (this.#closed) throw new ShuttingDownError()
    const { fd, st } = await this.#files.open(request.path)
    let streaming = false
    try {
      const answer = await this.#respond(request, fd, st)
      streaming = answer.body instanceof FileBody
      return answer
    } catch (err) {
      throw err instanceof StreammeterError ? err : fsError(err)
    } finally {
      // Only a file body owns the descriptor (and closes it when it is done
      // or destroyed); HEAD, 304, 416, a Buffer body or a failure close it here.
      if (!streaming) await closeFd(fd)
    }
  }

  /** Nothing is pooled: marks the origin closed (later fetches throw ShuttingDownError). Idempotent. */
  async close (): Promise<void> {
    this.#closed = true
  }

  /**
   * Answer from the open descriptor. A small body is read with positioned
   * reads; when it reaches the end of the file one byte more is asked for,
   * so that a file that grew or shrank since the fstat is noticed and the
   * answer is planned again from a fresh fstat: the validators sent then
   * describe the bytes sent.
   */
  async #respond (request: OriginRequest, fd: number, st: BigIntStats): Promise<OriginResponse> {
    for (let attempt = 1; ; attempt++) {
      const plan = this.#plan(request, st)
      if (plan.kind === 'done') return plan.response
      const { status, headers, start, length, toEof } = plan
      if (length > this.#bufferMax) {
        // The body reads at most the length announced: a file still being
        // appended to (a live segment) must not overrun its Content-Length.
        const body = new FileBody(fd, start, length, this.#chunkSize)
        return { status, headers, body, length }
      }
      const buffer = Buffer.allocUnsafe(toEof ? length + 1 : length)
      const got = await readFully(fd, buffer, start, length)
      if (got === length && (got < buffer.length || !toEof)) {
        return { status, headers, body: new BufferBody(got === buffer.length ? buffer : buffer.subarray(0, length)), length }
      }
      if (attempt < 3) {
        st = await call<BigIntStats>((cb) => { fstat(fd, { bigint: true }, cb) })
        continue
      }
      // Still changing after three tries. Grown: the bytes announced are
      // there (an append leaves them as they were). Shrunk: they are not.
      if (got >= length) return { status, headers, body: new BufferBody(buffer.subarray(0, length)), length }
      throw new OriginError('the file changed while it was read')
    }
  }

  #plan (request: OriginRequest, st: BigIntStats): Plan {
    const size = Number(st.size)
    const now = this.#now()
    const mtime = Number(st.mtimeNs / 1_000_000n)
    // RFC 9110 §8.8.2.1: a Last-Modified in the future is replaced by the
    // time of the response.
    const lastModified = Math.min(mtime, now)
    const etag = `"${size.toString(16)}-${mtime.toString(16)}"`
    const validators = {
      etag,
      'last-modified': formatHttpDate(lastModified),
      'cache-control': cacheControlFor(fileTypeOf(request.path))
    }
    const h = request.headers
    let start = 0
    let end = size - 1
    let status = 200

    if (request.whole !== true) {
      // RFC 9110 §13.2.2: preconditions before Range. (If-Match and
      // If-Unmodified-Since would come first and answer 412; there is no 412
      // error yet, so they are ignored: the client gets the current file.)
      if (isNotModified({ ifNoneMatch: h['if-none-match'], ifModifiedSince: h['if-modified-since'] }, { etag, lastModified })) {
        // §15.4.5: a 304 carries the validators and Cache-Control, no representation metadata.
        return { kind: 'done', response: { status: 304, headers: validators, body: null, length: 0 } }
      }
      const range = parseRange(h.range, size)
      if (range.kind !== 'none' && ifRangeMatches(h['if-range'], etag, lastModified, now)) {
        if (range.kind === 'unsatisfiable') throw new RangeNotSatisfiableError(size)
        start = range.start
        end = range.end
        status = 206
      }
    }

    const length = end - start + 1
    const headers: Record<string, string> = {
      'content-type': contentTypeOf(request.path),
      'content-length': String(length),
      'accept-ranges': 'bytes',
      ...validators
    }
    if (status === 206) headers['content-range'] = formatContentRange(start, end, size)
    if (request.method === 'HEAD') return { kind: 'done', response: { status, headers, body: null, length } }
    if (length === 0) return { kind: 'done', response: { status, headers, body: new BufferBody(Buffer.alloc(0)), length } }
    return { kind: 'read', status, headers, start, length, toEof: end === size - 1 }
  }
}

/**
 * Read into `buffer` from `position` on until at least `want` bytes are in
 * (looping on short reads, which network and FUSE file systems may give) or
 * the file ends; returns the bytes read. It stops at `want` although the
 * buffer may have room for one byte more: that byte only tells a grown file,
 * and asking again for it would cost every response a second read that
 * returns 0.
 */
async function readFully (fd: number, buffer: Buffer, position: number, want: number): Promise<number> {
  let got = 0
  while (got < want) {
    const n = await call<number>((cb) => { read(fd, buffer, got, buffer.length - got, position + got, cb) })
    if (n === 0) break
    got += n
  }
  return got
}
