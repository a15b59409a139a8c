import { FILE_TYPES } from '../../meter/index.ts'
import type { FileType } from '../../meter/index.ts'

/** Cumulative figures the history samples; both only ever grow. */
export interface ThroughputSource {
  /** Body bytes the client sockets have taken since start (`TransferRegistry.bytesTaken`). */
  bytesTaken (): number
  /** Media requests answered since start, per file type (`ServerMetrics.requestCounts`). */
  requestCounts (): ReadonlyMap<string, number>
}

/** Options of {@link ThroughputHistory}. */
export interface ThroughputHistoryOptions {
  /** Samples kept. @default 900 (15 minutes at one a second) */
  capacity?: number
  /** Time between samples, in ms. @default 1000 */
  intervalMs?: number
  /** The clock, ms since the epoch. @default Date.now */
  now?: () => number
}

/** A run of samples, oldest first, in the column layout the dashboard's chart takes. */
export interface ThroughputPoints {
  /** Seconds between samples. */
  interval_seconds: number
  /** Sample times, unix seconds (3 decimals). */
  t: number[]
  /** Bytes per second the client sockets took during the second before each sample. */
  bytes_per_second: number[]
  /** Requests answered per second, one column per file type. */
  requests_per_second: Record<FileType, number[]>
}

/**
 * A ring buffer of throughput samples for the `/monitor` dashboard: one every
 * second for the last 15 minutes, so a page opened now shows the history.
 *
 * Each sample is the difference of two cumulative readings divided by the
 * real time between them (a late timer does not make a spike). Nothing is
 * added to the hot path: the byte total already moves with every socket
 * write callback of a live transfer, and the request counts are kept by
 * {@link ServerMetrics.observeRequest}. One sample costs O(live transfers).
 */
export class ThroughputHistory {
  readonly #source: ThroughputSource
  readonly #capacity: number
  readonly #intervalMs: number
  readonly #now: () => number
  readonly #t: Float64Array
  readonly #bytes: Float64Array
  readonly #requests: Float64Array[]
  /** Index of the next slot to write. */
  #head = 0
  #size = 0
  #last: { at: number, bytes: number, requests: number[] } | undefined
  #timer: NodeJS.Timeout | undefined

  constructor (source: ThroughputSource, options: ThroughputHistoryOptions = {}) {
    this.#source = source
    this.#capacity = Math.max(1, Math.floor(options.capacity ?? 900))
    this.#intervalMs = options.intervalMs ?? 1000
    this.#now = options.now ?? Date.now
    this.#t = new Float64Array(this.#capacity)
    this.#bytes = new Float64Array(this.#capacity)
    this.#requests = FILE_TYPES.map(() => new Float64Array(this.#capacity))
  }

  /** Samples held now (at most the capacity). */
  get size (): number {
    return this.#size
  }

  /** Take the first reading and sample every interval until {@link close}. Idempotent. */
  start (): void {
    if (this.#timer !== undefined) return
    this.sample()
    // unref: a sampler alone never keeps the process (or a test) alive.
    this.#timer = setInterval(() => this.sample(), this.#intervalMs).unref()
  }

  /** Stop sampling; the samples taken stay readable. Idempotent. */
  close (): void {
    clearInterval(this.#timer)
    this.#timer = undefined
  }

  /**
   * Read the source and append one sample (the first reading only sets the
   * baseline). Called by the timer; public so tests can drive it with a clock.
   */
  sample (): void {
    const at = this.#now()
    const bytes = this.#source.bytesTaken()
    const counts = this.#source.requestCounts()
    const requests = FILE_TYPES.map((type) => counts.get(type) ?? 0)
    const last = this.#last
    this.#last = { at, bytes, requests }
    if (last === undefined || at <= last.at) return
    const seconds = (at - last.at) / 1000
    const i = this.#head
    this.#t[i] = Math.round(at) / 1000
    this.#bytes[i] = Math.round((bytes - last.bytes) / seconds)
    for (let k = 0; k < requests.length; k++) {
      this.#requests[k]![i] = Math.round(((requests[k]! - last.requests[k]!) / seconds) * 100) / 100
    }
    this.#head = (i + 1) % this.#capacity
    if (this.#size < this.#capacity) this.#size++
  }

  /**
   * The samples, oldest first.
   * @param after - only samples taken after this time (unix seconds); @default all
   */
  points (after = -Infinity): ThroughputPoints {
    const out: ThroughputPoints = {
      interval_seconds: this.#intervalMs / 1000,
      t: [],
      bytes_per_second: [],
      requests_per_second: Object.fromEntries(FILE_TYPES.map((type) => [type, [] as number[]])) as Record<FileType, number[]>
    }
    const first = (this.#head - this.#size + this.#capacity) % this.#capacity
    for (let n = 0; n < this.#size; n++) {
      const i = (first + n) % this.#capacity
      if (this.#t[i]! <= after) continue
      out.t.push(this.#t[i]!)
      out.bytes_per_second.push(this.#bytes[i]!)
      FILE_TYPES.forEach((type, k) => out.requests_per_second[type].push(this.#requests[k]![i]!))
    }
    return out
  }
}
