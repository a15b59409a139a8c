import type { MeterOptions } from './options.ts'
import { redactUrl } from './options.ts'
import { round2, unixSeconds } from './report-builder.ts'
import type { StoreCounters } from './types.ts'
import type { OutboxStats, UsageSummary } from './usage-store.ts'

const MIB = 1048576

/** This process's own counters, next to the store's shared ones. */
export interface InstanceCounters {
  events_recorded: number
  bytes_recorded: number
  /** Events ignored: no uid, 0 bytes, or a byte count that is not a safe integer. */
  events_ignored: number
  /** Bytes recorded after the final flush of `close()` (lost; should stay 0). */
  bytes_after_close: number
  /**
   * Events of new uids dropped because `memoryMaxUids` uids were already
   * waiting in memory for an unavailable store (lost; counted, never silent).
   */
  events_dropped: number
  /** Their bytes. */
  bytes_dropped: number
  flushes: number
  flush_failures: number
  /** Flushes triggered early because the in-process map reached `flushMaxUids`. */
  early_flushes: number
  delivery_attempts: number
  reports_delivered_here: number
}

/** Instance counters of a collector that has counted nothing yet. */
export function emptyInstanceCounters (): InstanceCounters {
  return {
    events_recorded: 0,
    bytes_recorded: 0,
    events_ignored: 0,
    bytes_after_close: 0,
    events_dropped: 0,
    bytes_dropped: 0,
    flushes: 0,
    flush_failures: 0,
    early_flushes: 0,
    delivery_attempts: 0,
    reports_delivered_here: 0
  }
}

/** The `/traffic` document (docs/endpoints.md): the original's shape plus `outbox` and more statistics. */
export interface TrafficStatus {
  worker_id: string
  running: boolean
  state: string
  config: {
    min_threshold_mb: number
    min_bytes_threshold: number
    report_interval_seconds: number
    accumulator_timeout_seconds: number
    flush_interval_seconds: number
    report_url: string | null
    api_key_configured: boolean
    store: string
  }
  current_state: {
    qualified_uids: number
    pending_accumulator_uids: number
    unflushed_uids: number
    next_report_in_seconds: number
    /** This instance holds the reporter lease (always true with a single-process store). */
    is_reporter: boolean
    /**
     * False when the store could not be read for this document (a Redis
     * outage): the shared figures are then the last ones read, and
     * `store_error` says why.
     */
    store_available: boolean
    store_error: string | null
  }
  statistics: Omit<StoreCounters, 'last_error' | 'last_error_at' | 'last_success_at'> & InstanceCounters & {
    current_qualified_uids: number
    reports_pending: number
  }
  outbox: {
    pending: number
    pending_bytes: number
    /** Reports parked after repeated refusals: out of the delivery order until put back (`streammeter outbox`). */
    parked: number
    /** Bytes of usage in them, not billed until they are delivered. */
    parked_bytes: number
    oldest_age_seconds: number | null
    last_success_at: number | null
    last_error: string | null
    last_error_at: number | null
  }
  current_traffic_summary: {
    uids: number
    total_bytes: number
    total_mb: number
    qualified_bytes: number
    pending_bytes: number
    unflushed_bytes: number
    top_uids: Array<{
      uid: string
      bytes: number
      requests: number
      qualified: boolean
      file_types: Record<string, number>
      unique_ips: number
      unique_sessions: number
      start_time: number
      last_activity: number
    }>
  }
}

/** Inputs of {@link buildTrafficStatus}, gathered by the collector. */
export interface StatusInputs {
  options: Readonly<MeterOptions>
  state: string
  storeKind: string
  /** Why the store could not be read (the shared figures are then stale), or null. */
  storeError: string | null
  now: number
  nextSealAt: number | undefined
  counters: StoreCounters
  outbox: OutboxStats
  summary: UsageSummary
  instance: InstanceCounters
  unflushedUids: number
  unflushedBytes: number
  isReporter: boolean
}

/** Seconds (one decimal) from `since` to `now` (ms), or null without a `since`. */
export function ageSeconds (since: number | undefined, now: number): number | null {
  return since === undefined ? null : Math.max(0, Math.round((now - since) / 100) / 10)
}

/** Assemble the `/traffic` document. Holds no secret: the URL is redacted, the key only said to exist. */
export function buildTrafficStatus (i: StatusInputs): TrafficStatus {
  const { options: o, counters: c, summary: s } = i
  const nextIn = i.nextSealAt === undefined ? o.reportInterval : Math.max(0, (i.nextSealAt - i.now) / 1000)
  const { last_error: lastError, last_error_at: lastErrorAt, last_success_at: lastSuccessAt, ...shared } = c
  const total = s.qualifiedBytes + s.pendingBytes
  return {
    worker_id: o.workerId,
    running: i.state === 'running',
    state: i.state,
    config: {
      min_threshold_mb: round2(o.minBytes / MIB),
      min_bytes_threshold: o.minBytes,
      report_interval_seconds: o.reportInterval,
      accumulator_timeout_seconds: o.accumulatorTimeout,
      flush_interval_seconds: o.flushInterval,
      report_url: redactUrl(o.reportUrl),
      api_key_configured: o.apiKey !== undefined && o.apiKey !== '',
      store: i.storeKind
    },
    current_state: {
      qualified_uids: s.qualifiedUids,
      pending_accumulator_uids: s.pendingUids,
      unflushed_uids: i.unflushedUids,
      next_report_in_seconds: Math.round(nextIn * 10) / 10,
      is_reporter: i.isReporter,
      store_available: i.storeError === null,
      store_error: i.storeError
    },
    statistics: {
      ...shared,
      ...i.instance,
      current_qualified_uids: s.qualifiedUids,
      reports_pending: i.outbox.pending
    },
    outbox: {
      pending: i.outbox.pending,
      pending_bytes: i.outbox.pendingBytes,
      parked: i.outbox.parked,
      parked_bytes: i.outbox.parkedBytes,
      oldest_age_seconds: ageSeconds(i.outbox.oldestCreatedAt, i.now),
      last_success_at: lastSuccessAt > 0 ? unixSeconds(lastSuccessAt) : null,
      last_error: lastError !== '' ? lastError : null,
      last_error_at: lastErrorAt > 0 ? unixSeconds(lastErrorAt) : null
    },
    current_traffic_summary: {
      uids: s.qualifiedUids + s.pendingUids,
      total_bytes: total,
      total_mb: round2(total / MIB),
      qualified_bytes: s.qualifiedBytes,
      pending_bytes: s.pendingBytes,
      unflushed_bytes: i.unflushedBytes,
      top_uids: s.top.map((r) => ({
        uid: r.uid,
        bytes: r.bytes,
        requests: r.requests,
        qualified: r.qualified,
        file_types: { ...r.fileTypes },
        unique_ips: r.ips.length,
        unique_sessions: r.sessions.length,
        start_time: unixSeconds(r.startTime),
        last_activity: unixSeconds(r.lastActivity)
      }))
    }
  }
}
