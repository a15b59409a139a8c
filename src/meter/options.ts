import { hostname } from 'node:os'

/**
 * Collector settings, in the units of the environment variables they come
 * from (seconds and bytes). The server's config schema maps `TRAFFIC_*` onto
 * these; the library can also be used with them directly.
 */
export interface MeterOptions {
  /** `TRAFFIC_MIN_BYTES`: bytes a uid must reach in a cycle to be reported; 0 reports every byte. @default 1048576 */
  minBytes: number
  /** `TRAFFIC_REPORT_INTERVAL`: seconds between window seals. @default 300 */
  reportInterval: number
  /** `TRAFFIC_ACCUMULATOR_TIMEOUT`: seconds after which a sub-threshold cycle is discarded. @default 600 */
  accumulatorTimeout: number
  /** `TRAFFIC_FLUSH_INTERVAL`: seconds between flushes of in-process deltas to the store. @default 1 */
  flushInterval: number
  /** `TRAFFIC_MAX_IPS`: distinct IPs kept per uid and cycle. @default 20 */
  maxIps: number
  /** `TRAFFIC_MAX_SESSIONS`: distinct sessions kept per uid and cycle. @default 10 */
  maxSessions: number
  /** `TRAFFIC_REPORT_MAX_UIDS`: uids per report; larger windows are split into parts. @default 5000 */
  reportMaxUids: number
  /**
   * `TRAFFIC_REPORT_MAX_BYTES`: most bytes of JSON per report body; larger
   * windows are split into parts (nginx refuses bodies over 1 MiB by
   * default). A part holds at least one uid. @default 524288
   */
  reportMaxBytes: number
  /**
   * `TRAFFIC_REPORT_MAX_REJECTIONS`: refusals (a lasting 4xx) after which a
   * report is parked and delivery moves on to the next one. @default 5
   */
  reportMaxRejections: number
  /** `TRAFFIC_REPORT_URL`: where reports are POSTed; without it reports stay in the outbox. @default undefined */
  reportUrl: string | undefined
  /** `TRAFFIC_API_KEY`: sent as `Authorization: Bearer`; never logged or shown. @default undefined */
  apiKey: string | undefined
  /** `TRAFFIC_REPORT_TIMEOUT`: seconds one delivery attempt may take. @default 30 */
  reportTimeout: number
  /** `TRAFFIC_FLUSH_MAX_UIDS`: distinct uids held in process memory before an early flush. @default 100000 */
  flushMaxUids: number
  /**
   * `TRAFFIC_MEMORY_MAX_UIDS`: distinct uids kept in process memory while the
   * store is unavailable (flushes failing). Events of further new uids are
   * dropped and counted (`events_dropped`, `bytes_dropped`); known uids keep
   * counting. @default 1000000
   */
  memoryMaxUids: number
  /** First retry delay in seconds; doubles per failure. @default 1 */
  retryBase: number
  /** Longest retry delay in seconds. @default 300 */
  retryCap: number
  /** `worker_id` in reports and `/traffic`. @default `<hostname>-<pid>` */
  workerId: string
}

/** Smallest `reportMaxBytes`: room for a report's envelope and a few uids. */
export const REPORT_MAX_BYTES_MIN = 1024 // bytes
/** Largest `reportMaxBytes` (64 MiB): no receiver takes more in one request. */
export const REPORT_MAX_BYTES_MAX = 64 * 1024 * 1024 // bytes
/** Largest `reportMaxRejections`. */
export const REPORT_MAX_REJECTIONS_MAX = 1000 // refusals

/** The longest duration a Node timer can wait: 2^31 - 1 ms, in whole seconds. */
export const MAX_TIMER_SECONDS = Math.floor((2 ** 31 - 1) / 1000)

/** Every default in one place, with units. */
export const METER_DEFAULTS: Readonly<MeterOptions> = Object.freeze({
  minBytes: 1048576, // bytes (1 MiB, as the service this replaces)
  reportInterval: 300, // seconds
  accumulatorTimeout: 600, // seconds
  flushInterval: 1, // seconds
  maxIps: 20, // addresses per uid and cycle
  maxSessions: 10, // session ids per uid and cycle
  reportMaxUids: 5000, // uids per report part
  reportMaxBytes: 524288, // bytes of JSON per report part (512 KiB; nginx refuses over 1 MiB by default)
  reportMaxRejections: 5, // refusals (lasting 4xx) of one report before it is parked
  reportUrl: undefined,
  apiKey: undefined,
  reportTimeout: 30, // seconds per attempt
  flushMaxUids: 100000, // uids in process memory before an early flush
  memoryMaxUids: 1000000, // uids in process memory while the store is down (~150 MB)
  retryBase: 1, // seconds, first retry delay
  retryCap: 300, // seconds, longest retry delay (5 min)
  workerId: `${hostname()}-${process.pid}`
})

/** Defaults merged with `options`, checked, frozen. Throws `RangeError` naming the bad option. */
export function resolveMeterOptions (options: Partial<MeterOptions> = {}): Readonly<MeterOptions> {
  const o: MeterOptions = { ...METER_DEFAULTS }
  for (const [k, v] of Object.entries(options)) {
    if (v !== undefined) (o as unknown as Record<string, unknown>)[k] = v
  }
  const nonNegativeInt = ['minBytes'] as const
  const positiveInt = ['maxIps', 'maxSessions', 'reportMaxUids', 'flushMaxUids', 'memoryMaxUids'] as const
  const positive = ['reportInterval', 'accumulatorTimeout', 'flushInterval', 'reportTimeout', 'retryBase', 'retryCap'] as const
  for (const k of nonNegativeInt) {
    if (!Number.isSafeInteger(o[k]) || o[k] < 0) throw new RangeError(`${k} must be a non-negative integer, got ${String(o[k])}`)
  }
  for (const k of positiveInt) {
    if (!Number.isSafeInteger(o[k]) || o[k] < 1) throw new RangeError(`${k} must be a positive integer, got ${String(o[k])}`)
  }
  for (const k of positive) {
    if (!Number.isFinite(o[k]) || o[k] <= 0) throw new RangeError(`${k} must be a positive number of seconds, got ${String(o[k])}`)
    // Node's timers hold at most 2^31 - 1 ms and fire after 1 ms when given
    // more: a longer flush interval would tick every millisecond.
    if (o[k] > MAX_TIMER_SECONDS) throw new RangeError(`${k} must be at most ${MAX_TIMER_SECONDS} seconds, got ${String(o[k])}`)
  }
  // Bounds of the settings this library adds to the original's; the config
  // schema applies the same ones to TRAFFIC_REPORT_MAX_BYTES / _MAX_REJECTIONS.
  for (const [k, min, max] of [['reportMaxBytes', REPORT_MAX_BYTES_MIN, REPORT_MAX_BYTES_MAX], ['reportMaxRejections', 1, REPORT_MAX_REJECTIONS_MAX]] as const) {
    if (!Number.isSafeInteger(o[k]) || o[k] < min || o[k] > max) throw new RangeError(`${k} must be an integer from ${min} to ${max}, got ${String(o[k])}`)
  }
  if (o.reportUrl !== undefined) {
    let url: URL
    try {
      url = new URL(o.reportUrl)
    } catch {
      throw new RangeError('reportUrl must be an absolute http(s) URL')
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new RangeError('reportUrl must be an absolute http(s) URL')
  }
  if (typeof o.workerId !== 'string' || o.workerId.length === 0) throw new RangeError('workerId must be a non-empty string')
  return Object.freeze(o)
}

/** The report URL without credentials or query (which may carry a key), for display. */
export function redactUrl (url: string | undefined): string | null {
  if (url === undefined) return null
  try {
    const u = new URL(url)
    const query = u.search.length > 0 ? '?…' : ''
    return `${u.protocol}//${u.host}${u.pathname}${query}`
  } catch {
    return '(invalid)'
  }
}
