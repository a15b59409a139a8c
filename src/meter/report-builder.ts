import type { IdSource } from './clock.ts'
import type { RenderedReport, UsageRecord } from './types.ts'

/** One uid's line in a report (DESIGN §3). */
export interface TrafficDetail {
  uid: string
  total_bytes: number
  total_mb: number
  request_count: number
  duration_seconds: number
  start_time: number
  last_activity: number
  file_types: Record<string, number>
  unique_ips: number
  unique_sessions: number
  avg_bytes_per_request: number
  bytes_per_second: number
}

/** The JSON body POSTed to `TRAFFIC_REPORT_URL`: the original format plus `window_id`, `part`, `parts`. */
export interface TrafficReport {
  report_id: string
  timestamp: number
  worker_id: string
  report_interval_seconds: number
  min_bytes_threshold: number
  total_qualified_uids: number
  traffic_details: TrafficDetail[]
  summary: {
    total_bytes: number
    total_mb: number
    total_requests: number
    avg_bytes_per_uid: number
    report_generated_at: string
  }
  /** Shared by all parts of one sealed window. */
  window_id: string
  /** 1-based part number; windows over `TRAFFIC_REPORT_MAX_UIDS` uids are split. */
  part: number
  /** Number of parts of this window. */
  parts: number
}

/** Fixed facts of the reports one collector renders. */
export interface ReportContext {
  workerId: string
  /** Seconds. */
  reportInterval: number
  minBytes: number
  maxUidsPerReport: number
  newId: IdSource
}

const MIB = 1048576

/** Rounds to 2 decimals (half away from zero on the binary value). */
export function round2 (n: number): number {
  return Math.round(n * 100) / 100
}

/** Unix seconds (whole) of a ms timestamp. */
export function unixSeconds (ms: number): number {
  return Math.floor(ms / 1000)
}

/** `YYYY-MM-DD HH:MM:SS UTC`, the original's `report_generated_at`. */
export function formatUtc (ms: number): string {
  return new Date(ms).toISOString().slice(0, 19).replace('T', ' ') + ' UTC'
}

/** The report line of one record. `duration_seconds = max(1, last_activity - start_time)` on the whole seconds shown. */
export function trafficDetail (r: UsageRecord): TrafficDetail {
  const start = unixSeconds(r.startTime)
  const last = unixSeconds(r.lastActivity)
  const duration = Math.max(1, last - start)
  return {
    uid: r.uid,
    total_bytes: r.bytes,
    total_mb: round2(r.bytes / MIB),
    request_count: r.requests,
    duration_seconds: duration,
    start_time: start,
    last_activity: last,
    file_types: { ...r.fileTypes },
    unique_ips: r.ips.length,
    unique_sessions: r.sessions.length,
    // Integers, truncated, as the original sent them (int(x) in Python): a
    // receiver with integer columns refuses 349525.33.
    avg_bytes_per_request: r.requests > 0 ? Math.trunc(r.bytes / r.requests) : 0,
    bytes_per_second: Math.trunc(r.bytes / duration)
  }
}

/**
 * Render the qualified records of one sealed window as report bodies, split
 * into parts of at most `maxUidsPerReport` uids, each with its own
 * `report_id`. Pure apart from `newId`; the bodies are stored as rendered and
 * re-sent byte for byte.
 */
export function renderReports (records: readonly UsageRecord[], sealedAt: number, ctx: ReportContext): RenderedReport[] {
  if (records.length === 0) return []
  const windowId = ctx.newId()
  const parts = Math.ceil(records.length / ctx.maxUidsPerReport)
  const out: RenderedReport[] = []
  for (let p = 0; p < parts; p++) {
    const slice = records.slice(p * ctx.maxUidsPerReport, (p + 1) * ctx.maxUidsPerReport)
    const details = slice.map(trafficDetail)
    let totalBytes = 0
    let totalRequests = 0
    for (const d of details) {
      totalBytes += d.total_bytes
      totalRequests += d.request_count
    }
    const report: TrafficReport = {
      report_id: ctx.newId(),
      timestamp: unixSeconds(sealedAt),
      worker_id: ctx.workerId,
      report_interval_seconds: ctx.reportInterval,
      min_bytes_threshold: ctx.minBytes,
      total_qualified_uids: details.length,
      traffic_details: details,
      summary: {
        total_bytes: totalBytes,
        total_mb: round2(totalBytes / MIB),
        total_requests: totalRequests,
        avg_bytes_per_uid: Math.trunc(totalBytes / details.length),
        report_generated_at: formatUtc(sealedAt)
      },
      window_id: windowId,
      part: p + 1,
      parts
    }
    out.push({ reportId: report.report_id, body: JSON.stringify(report), uids: details.length, bytes: totalBytes })
  }
  return out
}
