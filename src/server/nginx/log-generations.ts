import { closeSync, existsSync, fchmodSync, openSync, renameSync, rmSync, statSync } from 'node:fs'
import { EngineError } from '../../errors.ts'
import { checkGeneration, findWriter, liveGeneration, rotatedFile, rotatedGenerations } from './log-rotation.ts'
import type { Writer } from './log-rotation.ts'

/** Rotation of the access log by its reader (`AccessLogReaderOptions.rotate`). */
export interface LogRotationOptions {
  /**
   * Rotate once the live file has at least this many bytes: it is renamed
   * `<path>.<generation>` and created again, empty, with the same mode. At
   * most 1 GiB, so that a generation stays far below the 4 GiB a position
   * can address. @default 64 MiB
   */
  maxBytes?: number | undefined
  /**
   * Tell nginx to reopen its logs (`NginxSupervisor.reopenLogs`, SIGUSR1).
   * Called after each rename; called again, at most every 2 s, while the
   * newest rotated file is still open for writing 2 s after the reader
   * reached its end (a signal lost to a crash or to nginx restarting), and
   * when the live file is missing (created again first).
   */
  reopen: () => void
  /**
   * Ms between rotation checks while the reader is attached. They also run
   * at every read, but no read runs while the store is down, and the log
   * must not outgrow what a position can address meanwhile. @default 1000
   */
  interval?: number | undefined
  /**
   * Told when a rotation fails (the live file cannot be renamed or created,
   * `reopen` throws). It is not thrown: the lines are still read, and the
   * check runs again at the next read or tick.
   */
  onError?: ((err: unknown) => void) | undefined
}

/**
 * Create the access log `path` with `mode` if it is missing, and give it
 * that mode if nginx created it first: nginx would make it readable by
 * everyone (0644), and the log holds session ids.
 */
export function createLogFile (path: string, mode = 0o600): void {
  const fd = openSync(path, 'a', mode)
  try {
    fchmodSync(fd, mode)
  } finally {
    closeSync(fd)
  }
}

/** Default of `maxBytes`. */
const ROTATE_BYTES = 64 * 1024 * 1024
/** Largest `maxBytes`: a generation must stay far below 4 GiB. */
const MAX_ROTATE_BYTES = 1024 * 1024 * 1024
/** Without /proc: a rotated file unchanged (renamed or appended to) for this long has no writer left. */
const QUIET_MS = 10_000
/** A writer of the newest rotated file this long after its end was reached missed the reopen. */
const REOPEN_AGAIN_MS = 2000

/**
 * The files of one access log (docs/engines.md, "Log rotation"): the live
 * file `path`, which nginx appends to, and the rotated generations
 * `<path>.<n>`. Knows which file holds a generation, rotates the live file
 * past a size, tells when a rotated file has no writer left, and deletes
 * the ones the store is past. It must be the only one that renames,
 * creates or deletes them (one reader per log, in one process): the list of
 * rotated generations is read from the directory once, then kept here.
 */
export class LogGenerations {
  readonly #path: string
  readonly #rotate: Required<Pick<LogRotationOptions, 'maxBytes' | 'reopen' | 'interval' | 'onError'>> | undefined
  readonly #now: () => number
  readonly #proc: string
  #rotated: number[] | undefined
  #rotations = 0
  /** The last process found writing to a rotated file: looked at first next time. */
  #writer: Writer | undefined
  /** Since when a reader waits at the end of the rotated generation `#waitingFor`. */
  #waitingFor = -1
  #waitingSince = 0
  #reopened = -Infinity

  /** `now`: wall clock in ms (compared with file times). `proc`: where processes' descriptors are listed. */
  constructor (path: string, rotate: LogRotationOptions | undefined, now: () => number, proc: string) {
    this.#path = path
    this.#now = now
    this.#proc = proc
    if (rotate !== undefined) {
      const maxBytes = rotate.maxBytes ?? ROTATE_BYTES
      if (!Number.isSafeInteger(maxBytes) || maxBytes < 1 || maxBytes > MAX_ROTATE_BYTES) {
        throw new RangeError(`rotate.maxBytes is an integer from 1 to ${MAX_ROTATE_BYTES} (1 GiB), not ${maxBytes}`)
      }
      this.#rotate = { maxBytes, reopen: rotate.reopen, interval: rotate.interval ?? 1000, onError: rotate.onError ?? (() => {}) }
    }
  }

  /** The rotation options with their defaults; `undefined` without rotation. */
  get rotation (): Readonly<Required<LogRotationOptions>> | undefined {
    return this.#rotate
  }

  /** Rotations made here. */
  get rotations (): number {
    return this.#rotations
  }

  /** Rotated generations on disk, ascending. */
  get rotated (): readonly number[] {
    return this.#list()
  }

  /**
   * The file generation `generation` is read from: its rotated file, else
   * the live file when it is the live generation; `undefined` when its
   * rotated file is gone (deleted by someone else).
   */
  fileOf (generation: number): { file: string, rotated: boolean } | undefined {
    const rotated = this.#list()
    if (rotated.includes(generation)) return { file: rotatedFile(this.#path, generation), rotated: true }
    return generation < liveGeneration(generation, rotated) ? undefined : { file: this.#path, rotated: false }
  }

  /** Forget the missing rotated generation `generation`; returns the generation to go on with. */
  skip (generation: number): number {
    this.#rotated = this.#list().filter((g) => g !== generation)
    return this.#rotated.find((g) => g > generation) ?? liveGeneration(generation + 1, this.#rotated)
  }

  /**
   * Whether no process holds the rotated `file` of `generation` open for
   * writing any more, so that what it holds is all it will hold. Without
   * /proc, whether it has not changed (renamed or appended to) for 10 s.
   */
  released (file: string, generation: number): boolean {
    const now = this.#now()
    if (this.#waitingFor !== generation) {
      this.#waitingFor = generation
      this.#waitingSince = now
    }
    const writer = findWriter(file, this.#proc, this.#writer)
    if (writer === null) {
      this.#writer = undefined
      return true
    }
    if (writer === undefined) return now - statSync(file).ctimeMs >= QUIET_MS
    this.#writer = writer
    // nginx reopens within moments of USR1: a writer of the newest rotated
    // file still there later missed it (streammeter died between the rename
    // and the signal, or nginx was restarting). Older files are held by
    // nginx processes on their way out, which finish and exit.
    if (this.#rotate !== undefined && generation === this.#list().at(-1) &&
      now - this.#waitingSince >= REOPEN_AGAIN_MS && now - this.#reopened >= REOPEN_AGAIN_MS) {
      this.#reopen()
    }
    return false
  }

  /**
   * Rotate the live file when it reached `maxBytes`, `readerGeneration`
   * being the reader's; create it when it is missing (a crash between the
   * rename and the creation). One stat when there is nothing to do.
   * @throws {EngineError} when generations run out
   */
  check (readerGeneration: number): void {
    const rotate = this.#rotate
    if (rotate === undefined) return
    let size: number
    let mode: number
    try {
      ({ size, mode } = statSync(this.#path))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      this.#createLive(0o600)
      this.#reopen()
      return
    }
    if (size < rotate.maxBytes) return
    const rotated = this.#list()
    const generation = liveGeneration(readerGeneration, rotated)
    checkGeneration(generation + 1, this.#path)
    const target = rotatedFile(this.#path, generation)
    // rename() would replace it; it cannot exist (the newest rotated file is older).
    if (existsSync(target)) throw new EngineError(`cannot rotate ${this.#path}: ${target} exists`)
    renameSync(this.#path, target)
    rotated.push(generation)
    this.#rotations++
    this.#createLive(mode & 0o777)
    this.#reopen()
  }

  /** Delete the rotated files before `generation` (the store holds a position in it or past it). */
  dropBefore (generation: number): void {
    const rotated = this.#list()
    while (rotated.length > 0 && (rotated[0] as number) < generation) {
      rmSync(rotatedFile(this.#path, rotated[0] as number), { force: true })
      rotated.shift()
    }
  }

  /**
   * The live file, created before nginx reopens it: nginx would create it
   * readable by everyone (0644), and the log holds session ids.
   */
  #createLive (mode: number): void {
    createLogFile(this.#path, mode)
  }

  #list (): number[] {
    this.#rotated ??= rotatedGenerations(this.#path)
    return this.#rotated
  }

  #reopen (): void {
    this.#reopened = this.#now()
    try {
      this.#rotate?.reopen()
    } catch (err) {
      // Asked again while a writer is left (released()).
      this.#rotate?.onError(err)
    }
  }
}
