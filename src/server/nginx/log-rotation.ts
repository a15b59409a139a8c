import { readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs'
import { basename, dirname } from 'node:path'
import { EngineError } from '../../errors.ts'

/**
 * Positions in a rotated access log (docs/engines.md, "Log rotation"): one
 * safe integer holds the generation (which file) and the byte offset in it,
 * `generation * 2**32 + offset`, so that the stores keep one opaque number
 * and a batch id (`log:<key>@<from>-<to>`) never repeats across files. A
 * position from before rotation (a plain offset, generation 0) keeps its
 * meaning.
 */

/** Bytes one generation can address: an offset is below this. */
export const GENERATION_SPAN = 2 ** 32
/** Generations a safe integer can address: `(MAX_GENERATION + 1) * 2**32 - 1` is `Number.MAX_SAFE_INTEGER`. */
export const MAX_GENERATION = 2 ** 21 - 1

/**
 * The position of byte `offset` of generation `generation`.
 * @throws {RangeError} when either is out of range
 */
export function encodePosition (generation: number, offset: number): number {
  if (!Number.isSafeInteger(generation) || generation < 0 || generation > MAX_GENERATION) {
    throw new RangeError(`a log generation is an integer from 0 to ${MAX_GENERATION}, not ${generation}`)
  }
  if (!Number.isSafeInteger(offset) || offset < 0 || offset >= GENERATION_SPAN) {
    throw new RangeError(`a log offset is an integer from 0 to 2**32 - 1, not ${offset}`)
  }
  return generation * GENERATION_SPAN + offset
}

/** The generation a position is in. */
export function generationOf (position: number): number {
  return Math.floor(position / GENERATION_SPAN)
}

/** The byte offset a position names in its generation's file. */
export function offsetOf (position: number): number {
  return position % GENERATION_SPAN
}

/** The file of rotated generation `generation` of the live log `path`. */
export function rotatedFile (path: string, generation: number): string {
  return `${path}.${generation}`
}

/**
 * The rotated generations of `path` on disk (`<path>.<n>`, `n` written
 * without leading zeros), in ascending order. Other names (`access.log.1.gz`
 * of a logrotate pointed at the directory) are not ours and are left alone.
 */
export function rotatedGenerations (path: string): number[] {
  const prefix = `${basename(path)}.`
  let names: string[]
  try {
    names = readdirSync(dirname(path))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  const generations: number[] = []
  for (const name of names) {
    if (!name.startsWith(prefix)) continue
    const suffix = name.slice(prefix.length)
    const n = Number(suffix)
    if (/^\d+$/.test(suffix) && String(n) === suffix && n <= MAX_GENERATION) generations.push(n)
  }
  return generations.sort((a, b) => a - b)
}

/** A process's file descriptor found writing to a file. */
export interface Writer { pid: string, fd: string }

/**
 * A process that holds `file` open for writing, found in `<proc>/<pid>/fd`
 * by device and inode (so one that opened it under another name, or in
 * another mount namespace, counts too); `null` when there is none, and
 * `undefined` when `proc` cannot be read at all (no procfs): the caller
 * cannot know. A descriptor open for reading only (`tail -f`, `less`) does
 * not count: it adds no line. Processes whose descriptors this user may not
 * list are passed over: nginx runs as the user that starts it (as root, its
 * workers run as `user` but the master, which holds the log too, as root).
 * `hint`, the writer found last time, is looked at first: while an nginx
 * worker on its way out finishes a long response, a check costs a few
 * syscalls, not a scan of every process.
 */
export function findWriter (file: string, proc = '/proc', hint?: Writer): Writer | null | undefined {
  let target: { dev: bigint, ino: bigint }
  try {
    target = statSync(file, { bigint: true })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
  const name = basename(file)
  const writes = (pid: string, fd: string): boolean => {
    const link = `${proc}/${pid}/fd/${fd}`
    try {
      // readlink first: it rules out sockets, pipes and other files cheaply.
      if (!readlinkSync(link).includes(name)) return false
      const s = statSync(link, { bigint: true })
      if (s.dev !== target.dev || s.ino !== target.ino) return false
    } catch {
      return false // closed or gone meanwhile
    }
    try {
      // The open flags, in octal: O_WRONLY is 1, O_RDWR 2.
      const flags = /^flags:\s*([0-7]+)$/m.exec(readFileSync(`${proc}/${pid}/fdinfo/${fd}`, 'utf8'))?.[1]
      return flags === undefined || (parseInt(flags, 8) & 3) !== 0
    } catch {
      return true // cannot tell: a writer, to be safe
    }
  }
  if (hint !== undefined && writes(hint.pid, hint.fd)) return hint
  let pids: string[]
  try {
    pids = readdirSync(proc).filter((p) => /^\d+$/.test(p))
    readdirSync(`${proc}/self/fd`)
  } catch {
    return undefined
  }
  for (const pid of pids) {
    let fds: string[]
    try {
      fds = readdirSync(`${proc}/${pid}/fd`)
    } catch {
      continue // exited, or another user's
    }
    for (const fd of fds) if (writes(pid, fd)) return { pid, fd }
  }
  return null
}

/**
 * The generation the live file is: one past the newest rotated file, and
 * never below the reader's own generation (rotated files before it may have
 * been deleted already).
 */
export function liveGeneration (readerGeneration: number, rotated: readonly number[]): number {
  const newest = rotated.at(-1)
  return newest === undefined ? readerGeneration : Math.max(readerGeneration, newest + 1)
}

/**
 * Refuse a generation that positions cannot address.
 * @throws {EngineError}
 */
export function checkGeneration (generation: number, path: string): void {
  if (generation >= MAX_GENERATION) {
    throw new EngineError(`the access log ${path} reached generation ${generation}, the last a position can address ` +
      `(${MAX_GENERATION}): it is not rotated any more`)
  }
}
