import type { IdSource } from './clock.ts'
import { reportTotals } from './report-builder.ts'
import type { TrafficDetail, TrafficReport } from './report-builder.ts'
import type { OutboxEntry, RenderedReport } from './types.ts'

/** A stored report with the fields a split rewrites; other fields pass through unchanged. */
type SplittableReport = Pick<TrafficReport, 'traffic_details' | 'summary'> & Record<string, unknown>

/**
 * Split a stored report in two for a receiver that refused it as too large
 * (HTTP 413, docs/report-format.md, "Refused reports"): the first half of
 * its `traffic_details` (the larger half of an odd count) and the rest, in
 * their order, each with a new `report_id`, its own `total_qualified_uids`
 * and `summary` (the generation date kept), and `split_from`: the id of the
 * report it replaces, which the receiver never accepted. Every other field
 * (`timestamp`, `window_id`, `part`, `parts`…) stays as it was, in its place.
 * @returns the two halves, or undefined when the body is not a report of at
 *   least two uids whose lines add up to the entry's uids and bytes: such a
 *   refusal is treated like any other lasting one
 */
export function splitReport (entry: Pick<OutboxEntry, 'reportId' | 'body' | 'uids' | 'bytes'>, newId: IdSource): [RenderedReport, RenderedReport] | undefined {
  const report = parseReport(entry.body)
  if (report === undefined || report.traffic_details.length < 2) return undefined
  const details = report.traffic_details
  const middle = Math.ceil(details.length / 2)
  const [first, second] = [details.slice(0, middle), details.slice(middle)].map((lines): RenderedReport => {
    const totals = reportTotals(lines)
    const reportId = newId()
    // Spreads keep the stored key order; values replaced in place, split_from last.
    const body = JSON.stringify({
      ...report,
      report_id: reportId,
      total_qualified_uids: lines.length,
      traffic_details: lines,
      summary: { ...report.summary, ...totals },
      split_from: entry.reportId
    })
    return { reportId, body, uids: lines.length, bytes: totals.total_bytes }
  }) as [RenderedReport, RenderedReport]
  if (first.uids + second.uids !== entry.uids || first.bytes + second.bytes !== entry.bytes) return undefined
  return [first, second]
}

function parseReport (body: string): SplittableReport | undefined {
  let value: unknown
  try {
    value = JSON.parse(body)
  } catch {
    return undefined
  }
  if (typeof value !== 'object' || value === null) return undefined
  const { traffic_details: details, summary } = value as Record<string, unknown>
  if (!Array.isArray(details) || typeof summary !== 'object' || summary === null || !details.every(isDetail)) return undefined
  return value as SplittableReport
}

function isDetail (d: unknown): d is TrafficDetail {
  if (typeof d !== 'object' || d === null) return false
  const { total_bytes: bytes, request_count: requests } = d as Record<string, unknown>
  return Number.isSafeInteger(bytes) && Number.isSafeInteger(requests)
}
