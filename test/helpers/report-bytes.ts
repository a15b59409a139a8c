import type { UsageStore } from '../../src/meter/index.ts'

/** A report body as JSON text, or already parsed. */
type Report = string | { traffic_details: unknown }

/** Add each uid's `total_bytes` of a report (body text or parsed) to `into`. Returns `into`. */
export function addReportBytes (into: Map<string, number>, report: Report): Map<string, number> {
  const parsed = typeof report === 'string' ? JSON.parse(report) as { traffic_details: unknown } : report
  for (const d of parsed.traffic_details as Array<{ uid: string, total_bytes: number }>) {
    into.set(d.uid, (into.get(d.uid) ?? 0) + d.total_bytes)
  }
  return into
}

/**
 * Everything `store` holds for each uid, in records and in reports of its
 * outbox, and the requests of both: what a graceful stop left there.
 */
export async function storeTotals (store: Pick<UsageStore, 'records' | 'outbox'>): Promise<{ bytes: Map<string, number>, requests: number }> {
  const bytes = new Map<string, number>()
  let requests = 0
  for (const r of await store.records()) {
    bytes.set(r.uid, (bytes.get(r.uid) ?? 0) + r.bytes)
    requests += r.requests
  }
  for (const e of await store.outbox()) {
    addReportBytes(bytes, e.body)
    requests += (JSON.parse(e.body) as { summary: { total_requests: number } }).summary.total_requests
  }
  return { bytes, requests }
}
