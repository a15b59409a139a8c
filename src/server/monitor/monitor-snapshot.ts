import type { TrafficCollector, TrafficStatus, UsageStore } from '../../meter/index.ts'
import type { DeniedLog, DeniedRequest, DenialReason } from '../access/denials.ts'
import { probeStore } from '../admin/store-probe.ts'
import type { ThroughputHistory, ThroughputPoints } from './throughput-history.ts'
import type { TransferRegistry, TransferView } from '../media/transfers.ts'

/** A store probe slower than this counts as failed on the dashboard. */
const PROBE_TIMEOUT_MS = 2000

/** Where the dashboard's figures come from. */
export interface MonitorSources {
  collector: TrafficCollector | undefined
  store: Pick<UsageStore, 'kind' | 'outboxStats'>
  transfers: TransferRegistry
  history: ThroughputHistory
  version: string
  workerId: string
  state: () => string
  /** Set by the nginx engine, whose transfers are nginx's, not visible here. */
  bytesSent?: (() => number) | undefined
  /** Refused media requests (docs/access.md#denials). */
  denials?: DeniedLog | undefined
}

/** Recent denials the dashboard lists. */
const DENIALS_SHOWN = 10

/** Options of {@link buildMonitorSnapshot}. */
export interface MonitorSnapshotOptions {
  /** Top uids of the window listed. @default 10 */
  top?: number
  /** Active transfers listed (largest first). @default 50 */
  transfers?: number
  /** Throughput samples after this time only (unix seconds). @default all */
  historyAfter?: number
  now?: number
}

/** One uid of the window's top list. */
export type MonitorUid = TrafficStatus['current_traffic_summary']['top_uids'][number]

/**
 * The dashboard's document (`/monitor/api/snapshot`, and each `snapshot`
 * event of `/monitor/api/events`). Holds no secret: the report URL is
 * redacted and the API key only said to exist; store errors are codes.
 * Values that come from clients (uid, path, IP, session id) are data for
 * the page to show as text.
 */
export interface MonitorSnapshot {
  /** ms since the epoch. */
  generated_at: number
  version: string
  worker_id: string
  state: string
  throughput: ThroughputPoints
  /**
   * The node engine's live responses. `visible` is false in the nginx
   * engine: nginx streams them, and streammeter learns of each one only when
   * nginx has finished it (count 0, list empty).
   */
  active_transfers: { visible: boolean, count: number, transfers: TransferView[] }
  /** Null when the collector is disabled (`TRAFFIC_COLLECTOR_ENABLED=false`). */
  window: {
    qualified_uids: number
    pending_accumulator_uids: number
    uids: number
    total_bytes: number
    bytes_discarded: number
    accumulator_cleanups: number
    next_report_in_seconds: number
    report_interval_seconds: number
    min_bytes_threshold: number
    top_uids: MonitorUid[]
  } | null
  /** Null when the collector is disabled. */
  delivery: TrafficStatus['outbox'] & {
    report_url: string | null
    api_key_configured: boolean
    reports_failed: number
    total_reports_sent: number
    total_bytes_reported: number
  } | null
  store: {
    kind: string
    /** The probe answered within 2 s. */
    ok: boolean
    /** From the collector (`current_state.store_available`); null when it is disabled. */
    available: boolean | null
    error: string | null
    latency_ms: number
    /** This instance holds the reporter lease; null when the collector is disabled. */
    is_reporter: boolean | null
  }
  /** Refused media requests since start, by reason, and the last ten (no token or uid in them). */
  denials: { counts: Record<DenialReason, number>, recent: DeniedRequest[] } | null
}

/**
 * Gather one dashboard document: `collector.status()` (the `/traffic`
 * figures), the live transfers, the throughput history and a timed store
 * probe, read concurrently.
 */
export async function buildMonitorSnapshot (src: MonitorSources, options: MonitorSnapshotOptions = {}): Promise<MonitorSnapshot> {
  const now = options.now ?? Date.now()
  const [status, probe] = await Promise.all([
    src.collector?.status(options.top ?? 10),
    probeStore(src.store, PROBE_TIMEOUT_MS)
  ])
  return {
    generated_at: now,
    version: src.version,
    worker_id: src.workerId,
    state: src.state(),
    throughput: src.history.points(options.historyAfter),
    active_transfers: {
      visible: src.bytesSent === undefined, count: src.transfers.size, transfers: src.transfers.list(now, options.transfers ?? 50)
    },
    window: status === undefined ? null : windowOf(status),
    delivery: status === undefined ? null : deliveryOf(status),
    store: {
      kind: src.store.kind,
      ok: probe.ok,
      available: status?.current_state.store_available ?? null,
      error: probe.error ?? status?.current_state.store_error ?? null,
      latency_ms: probe.latencyMs,
      is_reporter: status?.current_state.is_reporter ?? null
    },
    denials: src.denials === undefined ? null : { counts: src.denials.counts(), recent: src.denials.recent(DENIALS_SHOWN) }
  }
}

function windowOf (s: TrafficStatus): NonNullable<MonitorSnapshot['window']> {
  return {
    qualified_uids: s.current_state.qualified_uids,
    pending_accumulator_uids: s.current_state.pending_accumulator_uids,
    uids: s.current_traffic_summary.uids,
    total_bytes: s.current_traffic_summary.total_bytes,
    bytes_discarded: s.statistics.bytes_discarded,
    accumulator_cleanups: s.statistics.accumulator_cleanups,
    next_report_in_seconds: s.current_state.next_report_in_seconds,
    report_interval_seconds: s.config.report_interval_seconds,
    min_bytes_threshold: s.config.min_bytes_threshold,
    top_uids: s.current_traffic_summary.top_uids
  }
}

function deliveryOf (s: TrafficStatus): NonNullable<MonitorSnapshot['delivery']> {
  return {
    report_url: s.config.report_url,
    api_key_configured: s.config.api_key_configured,
    ...s.outbox,
    reports_failed: s.statistics.reports_failed,
    total_reports_sent: s.statistics.total_reports_sent,
    total_bytes_reported: s.statistics.total_bytes_reported
  }
}
