import { closeSync, openSync, readSync } from 'node:fs'
import { EngineError } from '../../errors.ts'
import type { TrafficCollector } from '../../meter/index.ts'
import type { ClientIpResolver } from '../access/client-ip.ts'
import { SESSION_COOKIE, sessionIdOf } from '../access/session-id.ts'
import type { MeteringInput } from '../metering/metering-input.ts'
import { fileTypeOf } from '../origin/media-types.ts'
import type { DenialEvent, DenialReason } from '../access/denials.ts'
import { parseLogLine } from './access-log-line.ts'
import type { LogLine } from './access-log-line.ts'
import { ResponseTally } from './logged-responses.ts'
import type { LoggedResponses } from './logged-responses.ts'
import { LogGenerations } from './log-generations.ts'
import type { LogRotationOptions } from './log-generations.ts'
import { GENERATION_SPAN, encodePosition, generationOf, offsetOf, rotatedFile } from './log-rotation.ts'

export type { LogRotationOptions } from './log-generations.ts'
export type { LoggedResponses } from './logged-responses.ts'

/** Options of {@link AccessLogReader}. */
export interface AccessLogReaderOptions {
  /** The access log nginx writes (the live file; rotated generations are `<path>.<n>` beside it). */
  path: string
  metering: MeteringInput
  /** `TRUSTED_PROXIES`, applied to each line's peer and `X-Forwarded-For` as the node engine does. */
  ips: ClientIpResolver
  /**
   * Names the log in the store (`LogCursor.key`): one per log file, so one
   * per host (`nginx:<WORKER_ID>`) when hosts share a store.
   */
  key: string
  /**
   * Position of the first line not read yet: the store's `logCursor`, which
   * the store holds. `generation * 2**32 + offset` (log-rotation.ts); a
   * plain byte offset is one in generation 0. @default 0
   */
  position?: number | undefined
  /**
   * The store's `logCursor().replayTo`: the first read stops exactly there,
   * so that a batch the store may have applied in part is sent again whole
   * and the same.
   */
  replayTo?: number | undefined
  /** Most bytes of log read at one flush; the rest waits for the next. @default 8 MiB */
  maxBytesPerRead?: number | undefined
  /**
   * Told, once per read that found lines, of every response they record,
   * metered or not (a 404, a HEAD), grouped: the engine's /metrics and
   * dashboard figures.
   */
  onResponses?: ((responses: Iterable<LoggedResponses>) => void) | undefined
  /** Told of each request the access check refused (a line with a verdict, docs/access.md#denials). */
  onDenial?: ((denial: DenialEvent) => void) | undefined
  /**
   * Told of a line that is no access-log line (it is skipped), and of an
   * unfinished last line of a rotated file that no process writes any more.
   */
  onBadLine?: ((line: string) => void) | undefined
  /**
   * Rotate the live file past a size (docs/engines.md, "Log rotation").
   * Without it the reader renames and creates no file; rotated files
   * already there (rotation turned off since) are still read, and deleted
   * once committed.
   */
  rotate?: LogRotationOptions | undefined
  /**
   * Told when a rotated file the position still needs is gone (deleted by
   * someone else): its unread lines are lost, and the reader goes on with
   * the next generation.
   */
  onMissingFile?: ((file: string) => void) | undefined
  /** Wall clock in ms, compared with file times. @default Date.now */
  now?: (() => number) | undefined
  /**
   * Where processes' open files are listed. When it cannot be read, a
   * rotated file counts as closed 10 s after its last change. @default '/proc'
   */
  proc?: string | undefined
}

/**
 * Bytes read at a time. At most 64 KiB: V8 puts a longer string in its
 * large-object space, and decoding 256 KiB at once cost 3.4 ns per byte
 * against 0.12 (a third of the reader's time per line).
 */
const CHUNK = 64 * 1024
/** njs's verdicts (`$sm_access`) on refused requests: the reason counted, and the status the client got. */
const DENIAL_OF_VERDICT: Readonly<Record<string, readonly [DenialReason, number]>> = {
  bad: ['bad_signature', 403],
  'ip-mismatch': ['ip_mismatch', 403],
  expired: ['expired', 410],
  'long-uid': ['uid_too_long', 400]
}

/** Default of `maxBytesPerRead`: about 30,000 lines, a few ms of parsing. */
const MAX_BYTES_PER_READ = 8 * 1024 * 1024
/** Offsets a read may reach: the position after a line is at most 2**32 - 1. */
const OFFSET_END = GENERATION_SPAN - 1

/**
 * The nginx engine's side of the metering input: reads nginx's access log
 * from a position, one complete line at a time, and hands each
 * response nginx finished to the metering input with the bytes nginx says
 * it sent (docs/engines.md). A `GET` answered 200 or 206 with a uid is
 * metered (an aborted one for what nginx sent, a range for its part); HEAD,
 * 304 and errors count 0, as in the node engine. The client IP and the
 * session are resolved from the line with the node engine's rules.
 *
 * A line nginx is still writing (no line feed yet) is left for the next
 * read: {@link position} only ever moves past whole lines.
 *
 * Exactly once across crashes ({@link attach}): the lines are read in the
 * collector's flush, and the position they reach is committed in the same
 * store transaction as the usage they produced; a restart resumes from the
 * committed position. The read happens only when the store took the last
 * batch (a flush whose held batch fails runs no hook), so usage never piles
 * up in memory past the store: the log on disk is the buffer.
 *
 * Rotation (`rotate`; docs/engines.md, "Log rotation"): the live file is
 * renamed to its generation's name past a size. The reader moves to the
 * next generation only at the end of a rotated file that no process holds
 * open any more, and a rotated file is deleted once the store holds a
 * position past it. One read never spans two generations.
 */
export class AccessLogReader {
  readonly #path: string
  readonly #metering: MeteringInput
  readonly #ips: ClientIpResolver
  readonly #onBadLine: (line: string) => void
  readonly #onResponses: ((responses: Iterable<LoggedResponses>) => void) | undefined
  readonly #onDenial: AccessLogReaderOptions['onDenial']
  /** This read's responses by method, status and file type. */
  readonly #responses = new ResponseTally()
  readonly #onMissingFile: (file: string) => void
  readonly #key: string
  readonly #maxBytes: number
  readonly #files: LogGenerations
  #position: number
  #replayTo: number | undefined
  /** The position the store holds: the rotated files before its generation can go. */
  #committed: number
  /** The last position handed to the collector. */
  #published: number
  #timer: NodeJS.Timeout | undefined

  constructor (options: AccessLogReaderOptions) {
    this.#path = options.path
    this.#metering = options.metering
    this.#ips = options.ips
    this.#position = options.position ?? 0
    this.#onBadLine = options.onBadLine ?? (() => {})
    this.#onResponses = options.onResponses
    this.#onDenial = options.onDenial
    this.#onMissingFile = options.onMissingFile ?? (() => {})
    this.#key = options.key
    this.#maxBytes = options.maxBytesPerRead ?? MAX_BYTES_PER_READ
    this.#replayTo = options.replayTo
    this.#files = new LogGenerations(options.path, options.rotate, options.now ?? Date.now, options.proc ?? '/proc')
    this.#committed = this.#position
    this.#published = this.#position
  }

  /**
   * Read at every flush of `collector`, and commit the position with the
   * usage. The collector must take no other usage, and the reader must have
   * been built at the position the store holds (`logCursor`). With
   * `rotate`, the live file's size is also checked on a timer, until
   * {@link close}.
   */
  attach (collector: TrafficCollector): void {
    collector.logPosition({ key: this.#key, position: this.#position })
    collector.beforeFlush(() => {
      // Hooks run only once the store took every earlier batch (a held one
      // is sent first, and its failure skips the hooks): the position the
      // last hook handed over is committed.
      this.markCommitted(this.#published)
      try {
        this.read()
      } finally {
        // The position always says exactly which lines were recorded, even
        // when a read failed part-way (it moves per whole chunk of lines).
        this.#published = this.#position
        collector.logPosition({ key: this.#key, position: this.#position })
      }
    })
    const rotation = this.#files.rotation
    if (rotation !== undefined && this.#timer === undefined) {
      // Hooks do not run while the store is down; the log must still not
      // outgrow what a position can address meanwhile.
      this.#timer = setInterval(() => { this.#checkRotation() }, rotation.interval)
      this.#timer.unref()
    }
  }

  /** Stop the rotation timer. Idempotent; {@link read} still works. */
  close (): void {
    clearInterval(this.#timer)
  }

  /** Position of the first line not read yet (`generation * 2**32 + offset`). */
  get position (): number {
    return this.#position
  }

  /** The generation the reader is in. */
  get generation (): number {
    return generationOf(this.#position)
  }

  /** Rotations this reader made. */
  get rotations (): number {
    return this.#files.rotations
  }

  /** Rotated files on disk: those not read to their end yet, and those read but not yet committed. */
  get rotatedFiles (): number {
    return this.#files.rotated.length
  }

  /**
   * Say that the store holds `position` (what {@link attach} does for a
   * collector): the rotated files before its generation are deleted.
   */
  markCommitted (position: number): void {
    if (position > this.#committed) this.#committed = position
    this.#files.dropBefore(generationOf(this.#committed))
  }

  /**
   * Read and meter the complete lines past the position, at most
   * `maxBytesPerRead` bytes of them, all of one generation; returns how
   * many were read. Synchronous: it runs inside the collector's flush,
   * between taking the usage and sending it.
   * @throws {EngineError} when a generation is longer than 4 GiB
   */
  read (): number {
    try {
      return this.#readLines()
    } finally {
      if (this.#onResponses !== undefined) this.#responses.handOver(this.#onResponses)
    }
  }

  #readLines (): number {
    // First the files a committed position is past (at a restart, those a
    // crash left between the commit and their deletion).
    this.#files.dropBefore(generationOf(this.#committed))
    this.#checkRotation()
    const replayTo = this.#replayTo
    this.#replayTo = undefined
    const generation = generationOf(this.#position)
    const offset = offsetOf(this.#position)
    const source = this.#files.fileOf(generation)
    if (source === undefined) return this.#skipMissing(generation)
    let end = offset + this.#maxBytes
    let finish = false
    if (replayTo !== undefined) {
      if (replayTo <= this.#position) end = offset
      else if (generationOf(replayTo) === generation) end = offsetOf(replayTo)
      else if (source.rotated && replayTo === encodePosition(generation + 1, 0)) {
        // The batch being replayed ended this generation: no writer held it then, so none now.
        end = OFFSET_END
        finish = true
      } else {
        throw new EngineError(`the batch to replay ends at ${replayTo}, past the end of generation ${generation} of ${this.#path}`)
      }
    }
    const first = this.#readFile(source.file, Math.min(end, OFFSET_END))
    if (first === undefined) return this.#skipMissing(generation)
    if (!source.rotated || !first.eof) return first.lines
    // At the end of a rotated generation, as far as it is written. Once no
    // process holds it, what is there is all there will be: read on to its
    // end (a writer may have added lines before it closed it).
    if (!finish && !this.#files.released(source.file, generation)) return first.lines
    const last = this.#readFile(source.file, OFFSET_END)
    if (last === undefined) return first.lines + this.#skipMissing(generation)
    if (!last.eof) return first.lines + last.lines
    // No writer will finish it: a line cut short (nginx killed mid-write).
    if (last.carry.length > 0) this.#onBadLine(last.carry.toString('utf8'))
    this.#position = encodePosition(generation + 1, 0)
    return first.lines + last.lines
  }

  /**
   * Meter the whole lines from the position up to offset `end` of `file`
   * (the file of the position's generation); `undefined` when it does not
   * exist. `eof`: the file's end was reached, `carry` the unfinished line
   * there.
   * @throws {EngineError} at 4 GiB, which no position can go past
   */
  #readFile (file: string, end: number): { lines: number, eof: boolean, carry: Buffer } | undefined {
    let fd: number
    try {
      fd = openSync(file, 'r')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
    const base = this.#position - offsetOf(this.#position)
    let offset = offsetOf(this.#position)
    let lines = 0
    let carry = Buffer.alloc(0)
    try {
      const buffer = Buffer.allocUnsafe(CHUNK)
      for (;;) {
        const from = offset + carry.length
        if (from >= end) {
          if (end === OFFSET_END && lines === 0 && readSync(fd, buffer, 0, 1, from) > 0) {
            throw new EngineError(`${file} is longer than 4 GiB, past what a log position can address: ` +
              'its lines from there on are not read (docs/engines.md, "Log rotation")')
          }
          return { lines, eof: false, carry }
        }
        const bytesRead = readSync(fd, buffer, 0, Math.min(CHUNK, end - from), from)
        if (bytesRead === 0) return { lines, eof: true, carry }
        const data = carry.length === 0 ? buffer.subarray(0, bytesRead) : Buffer.concat([carry, buffer.subarray(0, bytesRead)])
        const newline = data.lastIndexOf(0x0a)
        if (newline === -1) {
          carry = Buffer.from(data)
          continue
        }
        for (const text of data.toString('utf8', 0, newline).split('\n')) {
          if (text === '') continue
          this.#meter(text)
          lines++
        }
        offset += newline + 1
        this.#position = base + offset
        carry = Buffer.from(data.subarray(newline + 1))
      }
    } finally {
      closeSync(fd)
    }
  }

  /** Rotate when due. A failure is reported (`rotate.onError`), not thrown: the lines can still be read. */
  #checkRotation (): void {
    try {
      this.#files.check(generationOf(this.#position))
    } catch (err) {
      this.#files.rotation?.onError(err)
    }
  }

  /** Go on past a rotated generation whose file is gone; returns 0, the lines read. */
  #skipMissing (generation: number): number {
    this.#onMissingFile(rotatedFile(this.#path, generation))
    this.#position = encodePosition(this.#files.skip(generation), 0)
    return 0
  }

  /** Report a refused request: njs's verdict, when the status is the one it gives. */
  #denied (line: LogLine): void {
    const reason = DENIAL_OF_VERDICT[line.denial]
    if (reason === undefined || reason[1] !== line.status) return
    const xff = line.xff === '' ? undefined : line.xff
    this.#onDenial?.({ reason: reason[0], status: line.status, path: line.path, ip: this.#ips.resolve(line.ip, xff), time: Math.round(line.t * 1000) })
  }

  /** Meter one line. Never throws: a line it cannot read is reported and skipped. */
  #meter (text: string): void {
    const line = parseLogLine(text)
    if (line === undefined) {
      this.#onBadLine(text)
      return
    }
    const fileType = fileTypeOf(line.path)
    if (this.#onResponses !== undefined) this.#responses.add(line, fileType)
    if (line.denial !== '' && this.#onDenial !== undefined) this.#denied(line)
    if (line.uid === '' || line.method !== 'GET' || (line.status !== 200 && line.status !== 206) || line.bytes <= 0) return
    const headers = {
      'x-forwarded-for': line.xff === '' ? undefined : line.xff,
      'x-session-id': line.sidh === '' ? undefined : line.sidh,
      // Only the session cookie is logged, not the whole Cookie header.
      cookie: line.scookie === '' ? undefined : `${SESSION_COOKIE}=${line.scookie}`
    }
    // Recorded at the time it is read, as the node engine records a piece
    // when it meters it: lines read late (a backlog after an outage) must
    // not start cycles in the past that expiry would discard at once.
    this.#metering.finish({
      uid: line.uid,
      fileType,
      ip: this.#ips.resolve(line.ip, headers['x-forwarded-for']),
      sessionId: sessionIdOf(headers, line.sid === '' ? undefined : line.sid),
      bytes: line.bytes,
      recorded: 0
    })
  }
}
