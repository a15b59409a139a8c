import { close, constants, fstat, open, readlink, realpath, stat } from 'node:fs'
import type { BigIntStats } from 'node:fs'
import { join, sep } from 'node:path'
import { NotFoundError, OriginError, OriginUnreachableError, StreammeterError } from '../../errors.ts'
import type { PathCache, VerifiedPath } from './path-cache.ts'

// O_NOFOLLOW: the path is already resolved, so a symlink here means it was
// swapped since. O_NONBLOCK: opening a FIFO for reading would otherwise block
// a libuv worker until a writer appears (it has no effect on regular files).
// O_NOCTTY: a terminal device never becomes our controlling terminal.
const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0) | (constants.O_NOCTTY ?? 0)

// Errors that mean "no such file for you": answered 404 whatever the cause, so
// that a probe cannot tell a missing file from a forbidden or escaping one.
const NOT_FOUND_CODES = new Set(['ENOENT', 'ENOTDIR', 'ELOOP', 'ENAMETOOLONG', 'EACCES', 'EPERM', 'EISDIR', 'ENXIO', 'ENODEV', 'EINVAL'])

/** An open regular file, checked to be the one the request may read. */
export interface Opened {
  fd: number
  st: BigIntStats
}

/**
 * Opens files under a root directory for the filesystem origin (fs-origin.ts),
 * never one outside it.
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
 */
export class ConfinedFiles {
  readonly #root: string
  readonly #cache: PathCache
  #realRoot: string | undefined
  #resolvingRoot: Promise<string> | undefined
  /** Whether `/proc/self/fd` can name an open descriptor (Linux). */
  #procfs = process.platform === 'linux'
  #hits = 0
  #fullChecks = 0

  /** @param root the directory; relative to the working directory if not absolute */
  constructor (root: string, cache: PathCache) {
    this.#root = root
    this.#cache = cache
  }

  /** Entries held, hits (accepted through a remembered check) and full checks run. */
  get stats (): { entries: number, hits: number, fullChecks: number } {
    return { entries: this.#cache.size, hits: this.#hits, fullChecks: this.#fullChecks }
  }

  /**
   * Open `path` (validated, relative to the root) as a checked regular file.
   * @throws {NotFoundError} missing, not a regular file, or outside the root
   * @throws {OriginUnreachableError} the root itself cannot be resolved
   */
  async open (path: string): Promise<Opened> {
    const root = this.#realRoot ?? await this.#resolveRoot()
    return await this.#open(root, path)
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
}

/**
 * Run one callback-style fs call as a promise. The callback API on raw
 * descriptors, wrapped once per call, costs far less CPU than
 * `fs/promises` with its FileHandle per descriptor
 * (docs/performance.md#why-the-code-is-shaped-this-way).
 */
export function call<T> (start: (cb: (err: NodeJS.ErrnoException | null, value: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    start((err, value) => { if (err === null) resolve(value); else reject(err) })
  })
}

/** Close a descriptor; a failure to close a read-only descriptor loses nothing. */
export function closeFd (fd: number): Promise<void> {
  return new Promise<void>((resolve) => { close(fd, () => resolve()) })
}

/** Whether `path` lies strictly below the directory `root`. */
function isInside (path: string, root: string): boolean {
  return path.startsWith(root.endsWith(sep) ? root : root + sep)
}

/** A filesystem failure as the client may see it: 404, or a 502 with the original in `cause`. */
export function fsError (err: unknown): Error {
  if (err instanceof StreammeterError) return err
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string' && NOT_FOUND_CODES.has(code)) return new NotFoundError()
  return new OriginError('the origin failed', { cause: err })
}
