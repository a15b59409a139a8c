import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { TrafficCollector, TrafficStatus } from '../../meter/index.ts'
import { DENIAL_REASONS } from '../access/denials.ts'
import type { DenialReason } from '../access/denials.ts'
import type { TransferRegistry } from '../media/transfers.ts'

/** The limits counted by `streammeter_limit_hits_total`, named after their settings. */
export type LimitName = 'max_transfers_per_ip' | 'send_timeout' | 'playlist_max_bytes'

/** How long one collector snapshot serves the gauges, in ms (longer than a scrape takes). */
const SNAPSHOT_MS = 1000

/**
 * `/metrics` (Prometheus text, prom-client). One registry per server so that
 * several servers in one process (tests) do not share series. Request and
 * byte counters are updated per response; outbox and window figures are read
 * from the collector at scrape time.
 */
/** The figures one method, status and file type update. */
interface RequestSeries {
  requests: ReturnType<Counter<'method' | 'status' | 'file_type'>['labels']>
  bytes: ReturnType<Counter<'file_type'>['labels']>
  duration: ReturnType<Histogram<'file_type'>['labels']>
  answered: { count: number }
}

export class ServerMetrics {
  readonly registry = new Registry()
  readonly #requests: Counter<'method' | 'status' | 'file_type'>
  readonly #bytes: Counter<'file_type'>
  readonly #duration: Histogram<'file_type'>
  readonly storeLatency: Histogram<'operation'>
  readonly #limitHits: Counter<'limit'>
  readonly #denials: Counter<'reason'>
  readonly #limitSeries = new Map<string, ReturnType<Counter<'limit'>['labels']>>()
  readonly #series = new Map<string, RequestSeries>()

  /** Requests answered per file type since start (the dashboard samples it). */
  readonly #answered = new Map<string, { count: number }>()

  constructor (transfers: TransferRegistry) {
    const registers = [this.registry]
    collectDefaultMetrics({ register: this.registry, prefix: 'streammeter_' })
    this.#requests = new Counter({
      name: 'streammeter_requests_total',
      help: 'Media requests answered, by method, status and file type',
      labelNames: ['method', 'status', 'file_type'],
      registers
    })
    this.#bytes = new Counter({
      name: 'streammeter_bytes_sent_total',
      help: 'Body bytes the client sockets took, by file type',
      labelNames: ['file_type'],
      registers
    })
    this.#duration = new Histogram({
      name: 'streammeter_request_duration_seconds',
      help: 'Time from request to the end of the response',
      labelNames: ['file_type'],
      buckets: [0.005, 0.02, 0.1, 0.5, 2, 10, 60],
      registers
    })
    this.storeLatency = new Histogram({
      name: 'streammeter_store_operation_seconds',
      help: 'Latency of store operations (flush, seal, outbox…)',
      labelNames: ['operation'],
      buckets: [0.0005, 0.002, 0.01, 0.05, 0.2, 1, 5],
      registers
    })
    this.#limitHits = new Counter({
      name: 'streammeter_limit_hits_total',
      help: 'Requests refused or cut by a limit: max_transfers_per_ip (429), send_timeout (client cut), playlist_max_bytes (502)',
      labelNames: ['limit'],
      registers
    })
    this.#denials = new Counter({
      name: 'streammeter_access_denials_total',
      help: 'Media requests the access check refused, by reason: bad_signature, ip_mismatch (403), expired (410), uid_too_long (400)',
      labelNames: ['reason'],
      registers
    })
    for (const reason of DENIAL_REASONS) this.#denials.labels(reason).inc(0)
    this.registry.registerMetric(new Gauge({
      name: 'streammeter_active_transfers',
      help: 'Responses being streamed now',
      registers: [],
      collect () { this.set(transfers.size) }
    }))
  }

  /** Export the collector's window and outbox figures, read at scrape time. */
  watch (collector: TrafficCollector): void {
    // One status() (four store reads) serves every gauge of a scrape, not one per gauge.
    let snapshot: { at: number, status: Promise<TrafficStatus> } | undefined
    const status = (): Promise<TrafficStatus> => {
      const now = Date.now()
      if (snapshot === undefined || now - snapshot.at > SNAPSHOT_MS) snapshot = { at: now, status: collector.status(0) }
      return snapshot.status
    }
    const gauge = (name: string, help: string, pick: (s: TrafficStatus) => number | null): void => {
      this.registry.registerMetric(new Gauge({
        name,
        help,
        registers: [],
        async collect () {
          const value = pick(await status())
          if (value === null) this.reset()
          else this.set(value)
        }
      }))
    }
    gauge('streammeter_outbox_pending_reports', 'Reports waiting for delivery', (s) => s.outbox.pending)
    gauge('streammeter_outbox_pending_bytes', 'Bytes in reports waiting for delivery', (s) => s.outbox.pending_bytes)
    gauge('streammeter_outbox_parked_reports', 'Reports parked after repeated refusals by the endpoint (not billed until put back)', (s) => s.outbox.parked)
    gauge('streammeter_outbox_parked_bytes', 'Bytes of usage in parked reports', (s) => s.outbox.parked_bytes)
    gauge('streammeter_outbox_oldest_age_seconds', 'Age of the oldest undelivered report', (s) => s.outbox.oldest_age_seconds ?? 0)
    gauge('streammeter_report_last_success_timestamp_seconds', 'Unix time of the last accepted report (0 = never)', (s) => s.outbox.last_success_at ?? 0)
    gauge('streammeter_reports_sent', 'Reports accepted by the endpoint (all instances sharing the store)', (s) => s.statistics.total_reports_sent)
    gauge('streammeter_reports_failed', 'Failed delivery attempts (all instances sharing the store)', (s) => s.statistics.reports_failed)
    gauge('streammeter_bytes_reported', 'Bytes in accepted reports (all instances sharing the store)', (s) => s.statistics.total_bytes_reported)
    gauge('streammeter_bytes_discarded', 'Sub-threshold bytes discarded by expiry', (s) => s.statistics.bytes_discarded)
    gauge('streammeter_qualified_uids', 'Uids over the threshold in the current window', (s) => s.current_state.qualified_uids)
    gauge('streammeter_pending_accumulator_uids', 'Uids below the threshold in the current window', (s) => s.current_state.pending_accumulator_uids)
    gauge('streammeter_unflushed_uids', 'Uids recorded in this process and not yet flushed', (s) => s.current_state.unflushed_uids)
    gauge('streammeter_next_report_in_seconds', 'Time to the next window seal', (s) => s.current_state.next_report_in_seconds)
    gauge('streammeter_unflushed_bytes', 'Bytes recorded in this process and not yet in the store', (s) => s.current_traffic_summary.unflushed_bytes)
    gauge('streammeter_store_available', '1 while the store answers, 0 during an outage (usage then waits in memory)', (s) => s.current_state.store_available ? 1 : 0)
    // A process-local count, so a counter: rate() and increase() apply.
    this.registry.registerMetric(new Counter({
      name: 'streammeter_dropped_bytes_total',
      help: 'Bytes of new uids dropped because TRAFFIC_MEMORY_MAX_UIDS uids waited in memory for an unavailable store',
      registers: [],
      async collect () {
        const dropped = (await status()).statistics.bytes_dropped
        this.reset()
        if (dropped > 0) this.inc(dropped)
      }
    }))
  }

  /** Count one answered media request. */
  observeRequest (method: string, status: number, fileType: string, bytes: number, ms: number): void {
    const series = this.#seriesOf(method, status, fileType)
    series.requests.inc()
    series.answered.count++
    if (bytes > 0) series.bytes.inc(bytes)
    series.duration.observe(ms / 1000)
  }

  /**
   * Count `count` answered media requests of one method, status and file
   * type at once (the nginx engine's, per read of its log): `bytes` summed,
   * one duration in `seconds` per request.
   */
  observeRequests (method: string, status: number, fileType: string, count: number, bytes: number, seconds: Iterable<number>): void {
    const series = this.#seriesOf(method, status, fileType)
    series.requests.inc(count)
    series.answered.count += count
    if (bytes > 0) series.bytes.inc(bytes)
    for (const s of seconds) series.duration.observe(s)
  }

  #seriesOf (method: string, status: number, fileType: string): RequestSeries {
    // prom-client hashes a label object on every call; the children are
    // looked up once per label combination instead (a few dozen exist).
    const key = `${method} ${status} ${fileType}`
    let series = this.#series.get(key)
    if (series === undefined) {
      series = {
        requests: this.#requests.labels(method, String(status), fileType),
        bytes: this.#bytes.labels(fileType),
        duration: this.#duration.labels(fileType),
        answered: this.#answeredCell(fileType)
      }
      this.#series.set(key, series)
    }
    return series
  }

  /** Count one request the access check refused. */
  countDenial (reason: DenialReason): void {
    this.#denials.labels(reason).inc()
  }

  /** Count `n` requests (one unless said) refused or cut by a limit of docs/limits.md. */
  countLimitHit (limit: LimitName, n = 1): void {
    let series = this.#limitSeries.get(limit)
    if (series === undefined) {
      series = this.#limitHits.labels(limit)
      this.#limitSeries.set(limit, series)
    }
    series.inc(n)
  }

  /** Media requests answered since start, per file type (types never seen are absent). */
  requestCounts (): ReadonlyMap<string, number> {
    const out = new Map<string, number>()
    for (const [type, cell] of this.#answered) out.set(type, cell.count)
    return out
  }

  #answeredCell (fileType: string): { count: number } {
    let cell = this.#answered.get(fileType)
    if (cell === undefined) {
      cell = { count: 0 }
      this.#answered.set(fileType, cell)
    }
    return cell
  }
}
