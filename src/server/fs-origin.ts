import { close, constants, fstat, open, read, readlink, realpath, stat } from 'node:fs'
import type { BigIntStats } from 'node:fs'
import { join, sep } from 'node:path'
import {
  NotFoundError, OriginError, OriginUnreachableError, RangeNotSatisfiableError, ShuttingDownError, StreammeterError
} from '../errors.ts'
import { formatContentRange, formatHttpDate, ifRangeMatches, isNotModified, parseRange } from './byte-range.ts'
import { cacheControlFor, contentTypeOf, fileTypeOf } from './media-types.ts'
import { FileBody } from './file-body.ts'
import { isPushedBody } from './origin.ts'
import type { Origin, OriginRequest, OriginResponse } from './origin.ts'
import { PathCache } from './path-cache.ts'
import type { VerifiedPath } from './path-cache.ts'

/** Settings of {@link FsOrigin}. */
export interface FsOriginOptions {
  /**
   * Bytes per read of a body larger than `bufferMax` (see {@link FileBody}).
   * Each read is a trip through libuv's thread pool: 256 KiB instead of
   * Node's 64 KiB for file streams cut the CPU of a 1 MiB response by about
   * 40 % (docs/performance.md). A response in flight holds one chunk.
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
   * {@link PathCache}); 0 turns the cache off. An entry costs about 270
   * bytes of heap (measured), so the default bounds it to about 4.5 MB.
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

// O_NOFOLLOW: the path is already resolved, so a symlink here means it was
// swapped since. O_NONBLOCK: opening a FIFO for reading would otherwise block
// a libuv worker until a writer appears (it has no effect on regular files).
// O_NOCTTY: a terminal device never becomes our controlling terminal.
const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0) | (constants.O_NOCTTY ?? 0)

// Errors that mean "no such file for you": answered 404 whatever the cause, so
// that a probe cannot tell a missing file from a forbidden or escaping one.
const NOT_FOUND_CODES = new Set(['ENOENT', 'ENOTDIR', 'ELOOP', 'ENAMETOOLONG', 'EACCES', 'EPERM', 'EISDIR', 'ENXIO', 'ENODEV', 'EINVAL'])

/** An open regular file, checked to be the one the request may read. */
interface Opened {
  fd: number
  st: BigIntStats
}

/** What a request gets of a file of a given state, before any byte is read. */
type Plan =
  | { kind: 'done', response: OriginResponse }
  | { kind: 'read', status: number, headers: Record<string, string>, start: number, length: number, toEof: boolean }

/**
 * Serves files from a directory (`ORIGIN_ROOT`, DESIGN §4) with the
 * validators, ranges and conditionals of RFC 9110.
 *
 * Confinement (the full check): the root is resolved once (`realpath`, on
 * first use), every request's path is resolved with `realpath` too and must
 * lie strictly inside it, so a symlink that leads out is a 404 (not a 403,
 * which would tell a prober the file exists). Resolving before opening
 * matters: merely opening some device files has effects. The file is then
 * opened and checked again through the descriptor, so that the file checked
 * is the file read (see `#verify`). Only regular files are served; a
 * directory is a 404.
 *
 * The full check costs four thread-pool round trips before the first byte
 * (realpath, open, fstat, readlink), so its result is remembered for a short
 * TTL ({@link PathCache}). A hit opens the request's own path again
 * (O_NOFOLLOW) and accepts the descriptor only if fstat shows the very inode
 * the full check found inside the root: same device, inode number and birth
 * time (an inode number is reused as soon as its file is deleted; the birth
 * time tells a newer file that got it, say one outside the root, from the
 * checked one). Whatever happened to the path since (a directory swapped for
 * a symlink leading out, a file replaced by a new one), the file opened is
 * then the file that was proved to be inside; anything else, or any error,
 * falls back to the full check, and a failed full check forgets the entry.
 *
 * Opening the request's own path rather than the cached real path keeps the
 * cache invisible: a replaced file or a re-pointed directory symlink
 * (`current -> v2`) is served at once. The one exception is a path whose
 * last component is a symlink, which O_NOFOLLOW will not open: hits open
 * the real path found, so re-pointing such a link shows within the TTL.
 * What the TTL bounds: (1) the same inode may have been moved out of the
 * root since, with a symlink planted where its directory was; it is served
 * until the TTL ends (the bytes a writer of that file chose, nothing the
 * full check would have refused to reveal before the move). (2) Like the
 * full check's own open after its realpath, a hit's open follows whatever
 * directories are on the path now; a directory swapped for a symlink into
 * /dev makes it open a device before the identity check refuses it. The
 * full check has this race for microseconds; a hit has it for the TTL.
 * O_NONBLOCK and O_NOCTTY keep such an open from blocking or taking a
 * terminal; an attacker able to swap directories in the root could win the
 * full check's race anyway. Validators always come from the descriptor's
 * own fstat, never from the cache.
 *
 * Bodies: a small one (≤ `bufferMax`) is read into a Buffer with one
 * positioned read and returned whole (no stream objects, and no second read
 * to find the end of the file); a larger one is streamed from the
 * descriptor without buffering. All file system calls go through the
 * callback API on raw descriptors: `fs/promises` wraps each descriptor in a
 * FileHandle (a native object tracked for GC), costs about twice the CPU per
 * call, and its read stream awaits a promise per chunk.
 *
 * Measured (4 KiB files picked at random among 10,000, 64 connections, one
 * core, medians of 11 runs): 391 µs of process CPU per request with
 * fs/promises, a FileHandle stream and no cache; 277 now. Of that, the path
 * cache gives little at this spread of files (about 280 with it off, 3
 * runs): at 3,600 requests/s over 8,600 paths a 2 s TTL makes only about
 * half the requests hits (a 10 s TTL measured about 255).
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
  readonly #root: string
  readonly #chunkSize: number
  readonly #bufferMax: number
  readonly #now: () => number
  readonly #cache: PathCache
  #realRoot: string | undefined
  #resolvingRoot: Promise<string> | undefined
  /** Whether `/proc/self/fd` can name an open descriptor (Linux). */
  #procfs = process.platform === 'linux'
  #closed = false
  #hits = 0
  #fullChecks = 0

  /**
   * @param root the directory to serve; relative to the working directory if not absolute
   */
  constructor (root: string, options: FsOriginOptions = {}) {
    this.#root = root
    this.#chunkSize = options.chunkSize ?? 256 * 1024
    this.#bufferMax = options.bufferMax ?? 64 * 1024
    this.#now = options.now ?? Date.now
    this.#cache = new PathCache({
      maxEntries: options.pathCacheSize ?? 16_384,
      ttl: options.pathCacheTtl ?? 2000,
      now: options.monotonicNow ?? performance.now.bind(performance)
    })
  }

  /**
   * What the path cache did: entries held, requests whose file was accepted
   * through a remembered check, and full checks run (first requests,
   * expired entries, and hits that fell back).
   */
  get pathCacheStats (): { entries: number, hits: number, fullChecks: number } {
    return { entries: this.#cache.size, hits: this.#hits, fullChecks: this.#fullChecks }
  }

  /** {@inheritDoc Origin.fetch} */
  async fetch (request: OriginRequest): Promise<OriginResponse> {
    if (this.#closed) throw new ShuttingDownError()
    request.signal?.throwIfAborted()
    const root = this.#realRoot ?? await this.#resolveRoot()
    const { fd, st } = await this.#open(root, request.path)
    let streaming = false
    try {
      request.signal?.throwIfAborted()
      const answer = await this.#respond(request, fd, st)
      streaming = answer.body !== null && isPushedBody(answer.body)
      return answer
    } catch (err) {
      throw err instanceof StreammeterError || (request.signal?.aborted === true && err === request.signal.reason) ? err : fsError(err)
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

  async #resolveRoot (): Promise<string> {
    this.#resolvingRoot ??= call<string>((cb) => { realpath.native(this.#root, cb) })
    try {
      this.#realRoot = await this.#resolvingRoot
      return this.#realRoot
    } catch (err) {
      // Not kept: a root that comes back (a remount) is picked up again.
      this.#resolvingRoot = undefined
      throw new OriginUnreachableError({ cause: err })
    }
  }

  /** Open `path` under `root` as a checked regular file: from the cache when it can, else in full. */
  async #open (root: string, path: string): Promise<Opened> {
    const known = this.#cache.get(path)
    let lastIsLink = false
    if (known !== undefined) {
      let fd: number | undefined
      try {
        fd = await call<number>((cb) => { open(known.open, OPEN_FLAGS, cb) })
        const st = await call<BigIntStats>((cb) => { fstat(fd as number, { bigint: true }, cb) })
        if (st.ino === known.ino && st.dev === known.dev && st.birthtimeNs === known.birth && st.isFile()) {
          this.#hits++
          return { fd, st }
        }
      } catch (err) {
        // O_NOFOLLOW refuses a last component that is a symlink (or one
        // that became one): the full check decides, and hits then open the
        // real path it finds.
        lastIsLink = (err as { code?: unknown }).code === 'ELOOP'
      }
      if (fd !== undefined) await closeFd(fd)
    }
    try {
      return await this.#openChecked(root, path, lastIsLink || (known !== undefined && known.open !== join(root, path)))
    } catch (err) {
      this.#cache.delete(path)
      throw err
    }
  }

  /** The full check (see the class comment); remembers what it proved. */
  async #openChecked (root: string, path: string, lastIsLink: boolean): Promise<Opened> {
    this.#fullChecks++
    const verifiedAt = this.#cache.now()
    // `path` was validated (no `..`, no empty segment, no backslash), so the
    // join cannot climb; the check is a second line, not the first.
    const candidate = join(root, path)
    if (!isInside(candidate, root)) throw new NotFoundError()
    let real: string
    let fd: number
    try {
      real = await call<string>((cb) => { realpath.native(candidate, cb) })
      if (!isInside(real, root)) throw new NotFoundError()
      fd = await call<number>((cb) => { open(real, OPEN_FLAGS, cb) })
    } catch (err) {
      throw fsError(err)
    }
    try {
      // bigint: `mtimeMs` is a float that can land a hair under the real
      // millisecond, and the ETag must not depend on rounding; inode numbers
      // can exceed 2^53 (overlayfs puts a layer id in the high bits).
      const st = await call<BigIntStats>((cb) => { fstat(fd, { bigint: true }, cb) })
      if (!st.isFile()) throw new NotFoundError()
      await this.#verify(fd, st, real, root)
      // A last component that is a symlink shows as a different base name
      // (or, when the names agree, as ELOOP on the next hit).
      lastIsLink ||= real.slice(real.lastIndexOf(sep)) !== candidate.slice(candidate.lastIndexOf(sep))
      this.#cache.set(path, {
        open: lastIsLink ? real : candidate,
        dev: st.dev,
        ino: st.ino,
        birth: st.birthtimeNs,
        verifiedAt
      } satisfies VerifiedPath)
      return { fd, st }
    } catch (err) {
      await closeFd(fd)
      throw fsError(err)
    }
  }

  /**
   * Check that the descriptor is still a file inside the root. Between the
   * `realpath` above and the `open`, a directory on the path could have been
   * replaced by a symlink leading out (O_NOFOLLOW guards the last component
   * only). On Linux the kernel names the file a descriptor refers to in
   * `/proc/self/fd`, which settles it whatever happened in between.
   * Elsewhere, fall back to comparing the descriptor's dev/ino with a fresh
   * `stat` of the real path; that catches a swap that was undone before the
   * check but, unlike the procfs check, not one still in place.
   */
  async #verify (fd: number, st: BigIntStats, real: string, root: string): Promise<void> {
    if (this.#procfs) {
      try {
        const opened = await call<string>((cb) => { readlink(`/proc/self/fd/${fd}`, cb) })
        if (!isInside(opened, root)) throw new NotFoundError()
        return
      } catch (err) {
        if (err instanceof NotFoundError) throw err
        // No procfs mounted (a minimal container): use the fallback from now on.
        if ((err as { code?: unknown }).code === 'ENOENT') this.#procfs = false
      }
    }
    const again = await call<BigIntStats>((cb) => { stat(real, { bigint: true }, cb) })
    if (again.dev !== st.dev || again.ino !== st.ino) throw new NotFoundError()
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
        request.signal?.addEventListener('abort', () => body.destroy(), { once: true })
        return { status, headers, body, length }
      }
      const buffer = Buffer.allocUnsafe(toEof ? length + 1 : length)
      const got = await readFully(fd, buffer, start, length)
      if (got === length && (got < buffer.length || !toEof)) {
        return { status, headers, body: got === buffer.length ? buffer : buffer.subarray(0, length), length }
      }
      if (attempt < 3) {
        st = await call<BigIntStats>((cb) => { fstat(fd, { bigint: true }, cb) })
        continue
      }
      // Still changing after three tries. Grown: the bytes announced are
      // there (an append leaves them as they were). Shrunk: they are not.
      if (got >= length) return { status, headers, body: buffer.subarray(0, length), length }
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
    if (length === 0) return { kind: 'done', response: { status, headers, body: Buffer.alloc(0), length } }
    return { kind: 'read', status, headers, start, length, toEof: end === size - 1 }
  }
}

/**
 * Run one callback-style fs call as a promise. The callback API on raw
 * descriptors, wrapped once per call, costs about half the CPU of
 * `fs/promises` with its FileHandle per descriptor (measured: open, fstat,
 * read and close of a 4 KiB file, 60 µs against 105 µs).
 */
function call<T> (start: (cb: (err: NodeJS.ErrnoException | null, value: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    start((err, value) => { if (err === null) resolve(value); else reject(err) })
  })
}

/** Close a descriptor; a failure to close a read-only descriptor loses nothing. */
function closeFd (fd: number): Promise<void> {
  return new Promise<void>((resolve) => { close(fd, () => resolve()) })
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

/** Whether `path` lies strictly below the directory `root`. */
function isInside (path: string, root: string): boolean {
  return path.startsWith(root.endsWith(sep) ? root : root + sep)
}

/** A filesystem failure as the client may see it: 404, or a 502 with the original in `cause`. */
function fsError (err: unknown): Error {
  if (err instanceof StreammeterError) return err
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string' && NOT_FOUND_CODES.has(code)) return new NotFoundError()
  return new OriginError('the origin failed', { cause: err })
}
