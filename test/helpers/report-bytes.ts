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
