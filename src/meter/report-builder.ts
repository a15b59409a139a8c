import type { IdSource } from './clock.ts'
import type { RenderedReport, UsageRecord } from './types.ts'

/** One uid's line in a report (docs/report-format.md, "Body"). */
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
  /**
   * Most bytes (UTF-8) of JSON per report body: a window is split into parts
   * that stay under it, as well as under `maxUidsPerReport`. A part holds at
   * least one uid, whatever its size. @default no limit
   */
  maxBytesPerReport?: number | undefined
  newId: IdSource
}

/** The `summary` of a report without its date: what a split recomputes for each half. */
export type ReportTotals = Omit<TrafficReport['summary'], 'report_generated_at'>

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

/** Totals of `details` (at least one) for a report's `summary`. */
export function reportTotals (details: readonly TrafficDetail[]): ReportTotals {
  let totalBytes = 0
  let totalRequests = 0
  for (const d of details) {
    totalBytes += d.total_bytes
    totalRequests += d.request_count
  }
  return {
    total_bytes: totalBytes,
    total_mb: round2(totalBytes / MIB),
    total_requests: totalRequests,
    avg_bytes_per_uid: Math.trunc(totalBytes / details.length)
  }
}

/**
 * Render the qualified records of one sealed window as report bodies, split
 * into parts of at most `maxUidsPerReport` uids and `maxBytesPerReport` bytes
 * of JSON, each with its own `report_id`. Pure apart from `newId`; the bodies
 * are stored as rendered and re-sent byte for byte.
 */
export function renderReports (records: readonly UsageRecord[], sealedAt: number, ctx: ReportContext): RenderedReport[] {
  if (records.length === 0) return []
  const windowId = ctx.newId()
  // Each line is serialised once: its size decides the parts, and the body is
  // assembled from the same strings (a second JSON.stringify of 100,000 lines
  // would add about 130 ms to a seal).
  const details = records.map(trafficDetail)
  const lines = details.map((d) => JSON.stringify(d))
  const groups = partition(lines, ctx.maxUidsPerReport, lineBudget(ctx, sealedAt, windowId))
  const out: RenderedReport[] = []
  for (const [p, [from, to]] of groups.entries()) {
    const part = details.slice(from, to)
    const totals = reportTotals(part)
    const reportId = ctx.newId()
    const body = assemble({
      report_id: reportId,
      timestamp: unixSeconds(sealedAt),
      worker_id: ctx.workerId,
      report_interval_seconds: ctx.reportInterval,
      min_bytes_threshold: ctx.minBytes,
      total_qualified_uids: part.length
    }, lines.slice(from, to), {
      summary: { ...totals, report_generated_at: formatUtc(sealedAt) },
      window_id: windowId,
      part: p + 1,
      parts: groups.length
    })
    out.push({ reportId, body, uids: part.length, bytes: totals.total_bytes })
  }
  return out
}

/** The report fields before `traffic_details`, in the order of the format. */
type ReportHead = Pick<TrafficReport, 'report_id' | 'timestamp' | 'worker_id' | 'report_interval_seconds' | 'min_bytes_threshold' | 'total_qualified_uids'>
/** The report fields after `traffic_details`. */
type ReportTail = Pick<TrafficReport, 'summary' | 'window_id' | 'part' | 'parts'>

/** Exactly `JSON.stringify` of the report `head`, `traffic_details: lines`, `tail`, from lines already serialised. */
function assemble (head: ReportHead, lines: readonly string[], tail: ReportTail): string {
  return `${JSON.stringify(head).slice(0, -1)},"traffic_details":[${lines.join(',')}],${JSON.stringify(tail).slice(1)}`
}

/**
 * Bytes the lines of one part may take: the byte limit less the largest
 * envelope a part of this window can have (every number at its widest, a
 * report id longer than the window id by a margin, since both come from
 * `newId`). Infinity without a byte limit.
 */
function lineBudget (ctx: ReportContext, sealedAt: number, windowId: string): number {
  const limit = ctx.maxBytesPerReport ?? Infinity
  if (!Number.isFinite(limit)) return Infinity
  const wide = Number.MAX_SAFE_INTEGER
  const envelope = assemble({
    report_id: windowId + 'x'.repeat(64),
    timestamp: unixSeconds(sealedAt),
    worker_id: ctx.workerId,
    report_interval_seconds: ctx.reportInterval,
    min_bytes_threshold: ctx.minBytes,
    total_qualified_uids: wide
  }, [], {
    summary: { total_bytes: wide, total_mb: wide, total_requests: wide, avg_bytes_per_uid: wide, report_generated_at: formatUtc(sealedAt) },
    window_id: windowId,
    part: wide,
    parts: wide
  })
  return limit - Buffer.byteLength(envelope)
}

/**
 * Consecutive `[from, to)` ranges of `lines`, each of at most `maxLines`
 * lines whose bytes plus separating commas fit `budget`; a line larger than
 * the budget gets a part of its own.
 */
function partition (lines: readonly string[], maxLines: number, budget: number): Array<[number, number]> {
  const out: Array<[number, number]> = []
  let from = 0
  let bytes = 0
  const measured = Number.isFinite(budget)
  for (let i = 0; i < lines.length; i++) {
    const size = measured ? Buffer.byteLength(lines[i] as string) + (i > from ? 1 : 0) : 0
    if (i > from && (i - from >= maxLines || bytes + size > budget)) {
      out.push([from, i])
      from = i
      bytes = measured ? size - 1 : 0
    } else {
      bytes += size
    }
  }
  out.push([from, lines.length])
  return out
}
