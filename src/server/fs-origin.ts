import { constants } from 'node:fs'
import type { BigIntStats } from 'node:fs'
import { open, readlink, realpath, stat } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { join, sep } from 'node:path'
import { Readable, addAbortSignal } from 'node:stream'
import {
  NotFoundError, OriginError, OriginUnreachableError, RangeNotSatisfiableError, ShuttingDownError, StreammeterError
} from '../errors.ts'
import { formatContentRange, formatHttpDate, ifRangeMatches, isNotModified, parseRange } from './byte-range.ts'
import { cacheControlFor, contentTypeOf, fileTypeOf } from './media-types.ts'
import type { Origin, OriginRequest, OriginResponse } from './origin.ts'

/** Settings of {@link FsOrigin}. */
export interface FsOriginOptions {
  /**
   * Bytes per read of a body stream. 64 KiB is Node's default for files and
   * a good match for socket writes; larger buys little and costs memory per
   * stream.
   * @default 65536
   */
  highWaterMark?: number | undefined
  /** Clock in ms since the epoch (Last-Modified is clamped to it; If-Range dates use it). @default Date.now */
  now?: (() => number) | undefined
}

// O_NOFOLLOW: the path is already resolved, so a symlink here means it was
// swapped since. O_NONBLOCK: opening a FIFO for reading would otherwise block
// a libuv worker until a writer appears (it has no effect on regular files).
// O_NOCTTY: a terminal device never becomes our controlling terminal.
const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0) | (constants.O_NOCTTY ?? 0)

// Errors that mean "no such file for you": answered 404 whatever the cause, so
// that a probe cannot tell a missing file from a forbidden or escaping one.
const NOT_FOUND_CODES = new Set(['ENOENT', 'ENOTDIR', 'ELOOP', 'ENAMETOOLONG', 'EACCES', 'EPERM', 'EISDIR', 'ENXIO', 'ENODEV', 'EINVAL'])

/**
 * Serves files from a directory (`ORIGIN_ROOT`, DESIGN §4) with the
 * validators, ranges and conditionals of RFC 9110, streaming each body from
 * a file descriptor without buffering it.
 *
 * Confinement: the root is resolved once (`realpath`, on first use), every
 * request's path is resolved with `realpath` too and must lie strictly
 * inside it, so a symlink that leads out is a 404 (not a 403, which would
 * tell a prober the file exists). The file is then opened and checked again
 * through the descriptor, so that the file checked is the file read (see
 * `#verify`). Only regular files are served; a directory is a 404.
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
  readonly #highWaterMark: number
  readonly #now: () => number
  #realRoot: Promise<string> | undefined
  /** Whether `/proc/self/fd` can name an open descriptor (Linux). */
  #procfs = process.platform === 'linux'
  #closed = false

  /**
   * @param root the directory to serve; relative to the working directory if not absolute
   */
  constructor (root: string, options: FsOriginOptions = {}) {
    this.#root = root
    this.#highWaterMark = options.highWaterMark ?? 64 * 1024
    this.#now = options.now ?? Date.now
  }

  /** {@inheritDoc Origin.fetch} */
  async fetch (request: OriginRequest): Promise<OriginResponse> {
    if (this.#closed) throw new ShuttingDownError()
    request.signal?.throwIfAborted()
    const root = await this.#resolveRoot()
    const real = await this.#resolve(root, request.path)

    let handle: FileHandle
    try {
      handle = await open(real, OPEN_FLAGS)
    } catch (err) {
      throw fsError(err)
    }
    let handedOff = false
    try {
      // bigint: `mtimeMs` is a float that can land a hair under the real
      // millisecond, and the ETag must not depend on rounding.
      const st = await handle.stat({ bigint: true })
      if (!st.isFile()) throw new NotFoundError()
      await this.#verify(handle, st, real, root)
      request.signal?.throwIfAborted()
      const answer = this.#answer(request, st, handle)
      handedOff = answer.body !== null && answer.length !== 0
      return answer
    } catch (err) {
      throw err instanceof StreammeterError || (request.signal?.aborted === true && err === request.signal.reason) ? err : fsError(err)
    } finally {
      // HEAD, 304, 416, an empty file or any failure: nothing reads the file.
      if (!handedOff) await handle.close().catch(() => {})
    }
  }

  /** Nothing is pooled: marks the origin closed (later fetches throw ShuttingDownError). Idempotent. */
  async close (): Promise<void> {
    this.#closed = true
  }

  async #resolveRoot (): Promise<string> {
    this.#realRoot ??= realpath(this.#root)
    try {
      return await this.#realRoot
    } catch (err) {
      // Not cached: a root that comes back (a remount) is picked up again.
      this.#realRoot = undefined
      throw new OriginUnreachableError({ cause: err })
    }
  }

  /** Real path of `path` under `root`; 404 unless strictly inside it. */
  async #resolve (root: string, path: string): Promise<string> {
    // `path` was validated (no `..`, no empty segment, no backslash), so the
    // join cannot climb; the check is a second line, not the first.
    const candidate = join(root, path)
    if (!isInside(candidate, root)) throw new NotFoundError()
    let real: string
    try {
      real = await realpath(candidate)
    } catch (err) {
      throw fsError(err)
    }
    if (!isInside(real, root)) throw new NotFoundError()
    return real
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
  async #verify (handle: FileHandle, st: BigIntStats, real: string, root: string): Promise<void> {
    if (this.#procfs) {
      try {
        const opened = await readlink(`/proc/self/fd/${handle.fd}`)
        if (!isInside(opened, root)) throw new NotFoundError()
        return
      } catch (err) {
        if (err instanceof NotFoundError) throw err
        // No procfs mounted (a minimal container): use the fallback from now on.
        if ((err as { code?: unknown }).code === 'ENOENT') this.#procfs = false
      }
    }
    const again = await stat(real, { bigint: true })
    if (again.dev !== st.dev || again.ino !== st.ino) throw new NotFoundError()
  }

  #answer (request: OriginRequest, st: BigIntStats, handle: FileHandle): OriginResponse {
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
        return { status: 304, headers: validators, body: null, length: 0 }
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
    if (request.method === 'HEAD') return { status, headers, body: null, length }
    if (length === 0) return { status, headers, body: emptyBody(), length }

    // `end` bounds the read to the length announced: a file still being
    // appended to (a live segment) must not overrun its Content-Length.
    const body = handle.createReadStream({ start, end, highWaterMark: this.#highWaterMark })
    if (request.signal !== undefined) addAbortSignal(request.signal, body)
    return { status, headers, body, length }
  }
}

/** An empty byte stream (`Readable.from([])` would be an object stream). */
function emptyBody (): Readable {
  return new Readable({ read () { this.push(null) } })
}

/** Whether `path` lies strictly below the directory `root`. */
function isInside (path: string, root: string): boolean {
  return path.startsWith(root.endsWith(sep) ? root : root + sep)
}

/** A filesystem failure as the client may see it: 404, or a 502 with the original in `cause`. */
function fsError (err: unknown): Error {
  if (err instanceof NotFoundError) return err
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string' && NOT_FOUND_CODES.has(code)) return new NotFoundError()
  return new OriginError('the origin failed', { cause: err })
}
