import { closeSync, openSync, readSync } from 'node:fs'
import type { TrafficCollector } from '../../meter/index.ts'
import type { ClientIpResolver } from '../access/client-ip.ts'
import { SESSION_COOKIE, sessionIdOf } from '../access/session-id.ts'
import type { MeteringInput } from '../metering/metering-input.ts'
import { fileTypeOf } from '../origin/media-types.ts'

/** One line of the access log (nginx-config.ts, `ACCESS_LOG_FORMAT`). */
interface LogLine {
  t: number
  uid: string
  bytes: number
  status: number
  method: string
  path: string
  ip: string
  xff: string
  sidh: string
  scookie: string
  sid: string
}

const STRINGS = ['uid', 'method', 'path', 'ip', 'xff', 'sidh', 'scookie', 'sid'] as const

function isLogLine (v: unknown): v is LogLine {
  if (typeof v !== 'object' || v === null) return false
  const o = v as Record<string, unknown>
  return typeof o.bytes === 'number' && typeof o.status === 'number' && STRINGS.every((k) => typeof o[k] === 'string')
}

/** Options of {@link AccessLogReader}. */
export interface AccessLogReaderOptions {
  /** The access log nginx writes. */
  path: string
  metering: MeteringInput
  /** `TRUSTED_PROXIES`, applied to each line's peer and `X-Forwarded-For` as the node engine does. */
  ips: ClientIpResolver
  /**
   * Names the log in the store (`LogCursor.key`): one per log file, so one
   * per host (`nginx:<WORKER_ID>`) when hosts share a store.
   */
  key: string
  /** Byte offset of the first line not read yet (the store's `logCursor`). @default 0 */
  position?: number | undefined
  /**
   * The store's `logCursor().replayTo`: the first read stops exactly there,
   * so that a batch the store may have applied in part is sent again whole
   * and the same.
   */
  replayTo?: number | undefined
  /** Most bytes of log read at one flush; the rest waits for the next. @default 8 MiB */
  maxBytesPerRead?: number | undefined
  /** Told of a line that is no access-log line (it is skipped). */
  onBadLine?: ((line: string) => void) | undefined
}

/** Bytes read at a time. */
const CHUNK = 256 * 1024
/** Default of `maxBytesPerRead`: about 30,000 lines, a few ms of parsing. */
const MAX_BYTES_PER_READ = 8 * 1024 * 1024

/**
 * The nginx engine's side of the metering input: reads nginx's access log
 * from a byte position, one complete line at a time, and hands each
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
 */
export class AccessLogReader {
  readonly #path: string
  readonly #metering: MeteringInput
  readonly #ips: ClientIpResolver
  readonly #onBadLine: (line: string) => void
  readonly #key: string
  readonly #maxBytes: number
  #position: number
  #replayTo: number | undefined

  constructor (options: AccessLogReaderOptions) {
    this.#path = options.path
    this.#metering = options.metering
    this.#ips = options.ips
    this.#position = options.position ?? 0
    this.#onBadLine = options.onBadLine ?? (() => {})
    this.#key = options.key
    this.#maxBytes = options.maxBytesPerRead ?? MAX_BYTES_PER_READ
    this.#replayTo = options.replayTo
  }

  /**
   * Read at every flush of `collector`, and commit the position with the
   * usage. The collector must take no other usage, and the reader must have
   * been built at the position the store holds (`logCursor`).
   */
  attach (collector: TrafficCollector): void {
    collector.logPosition({ key: this.#key, position: this.#position })
    collector.beforeFlush(() => {
      try {
        this.read()
      } finally {
        // The position always says exactly which lines were recorded, even
        // when a read failed part-way (it moves per whole chunk of lines).
        collector.logPosition({ key: this.#key, position: this.#position })
      }
    })
  }

  /** Byte offset of the first line not read yet. */
  get position (): number {
    return this.#position
  }

  /**
   * Read and meter the complete lines past the position, at most
   * `maxBytesPerRead` bytes of them; returns how many were read. Synchronous:
   * it runs inside the collector's flush, between taking the usage and
   * sending it.
   */
  read (): number {
    let fd: number
    try {
      fd = openSync(this.#path, 'r')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0
      throw err
    }
    let lines = 0
    try {
      const buffer = Buffer.allocUnsafe(CHUNK)
      let carry = Buffer.alloc(0)
      let budget = this.#replayTo === undefined ? this.#maxBytes : this.#replayTo - this.#position
      this.#replayTo = undefined
      while (budget > 0) {
        const bytesRead = readSync(fd, buffer, 0, Math.min(CHUNK, budget), this.#position + carry.length)
        if (bytesRead === 0) break
        budget -= bytesRead
        const data = carry.length === 0 ? buffer.subarray(0, bytesRead) : Buffer.concat([carry, buffer.subarray(0, bytesRead)])
        const end = data.lastIndexOf(0x0a)
        if (end === -1) {
          carry = Buffer.from(data)
          continue
        }
        for (const text of data.toString('utf8', 0, end).split('\n')) {
          if (text === '') continue
          this.#meter(text)
          lines++
        }
        this.#position += end + 1
        carry = Buffer.from(data.subarray(end + 1))
      }
    } finally {
      closeSync(fd)
    }
    return lines
  }

  /** Meter one line. Never throws: a line it cannot read is reported and skipped. */
  #meter (text: string): void {
    let line: LogLine
    try {
      line = JSON.parse(text) as LogLine
    } catch {
      this.#onBadLine(text)
      return
    }
    if (!isLogLine(line)) {
      this.#onBadLine(text)
      return
    }
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
      fileType: fileTypeOf(line.path),
      ip: this.#ips.resolve(line.ip, headers['x-forwarded-for']),
      sessionId: sessionIdOf(headers, line.sid === '' ? undefined : line.sid),
      bytes: line.bytes,
      recorded: 0
    })
  }
}
