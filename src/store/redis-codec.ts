import type { FlushResult, OutboxEntry, UsageRecord } from '../meter/index.ts'

// What the redis store hands its scripts and reads back from their replies.

/**
 * A record as the scripts store it (src/store/redis-lua-prelude.ts, `encode`).
 * Redis's cjson writes an empty array as `{}`.
 */
interface RecordJson {
  b: number
  r: number
  ft: Record<string, number>
  ips: string[] | Record<string, never>
  s: string[] | Record<string, never>
  st: number
  la: number
  q: boolean
}

/** JSON cannot carry Infinity; a policy without a bound gets one no count reaches. */
export function limit (n: number): number {
  return Number.isFinite(n) ? n : Number.MAX_SAFE_INTEGER
}

/** [[uid, bytes, start time], …] of a flush or expiry reply → the discarded accumulators. */
export function toDiscarded (list: Array<[string, number, number]>): FlushResult['discarded'] {
  return list.map(([uid, bytes, startTime]) => ({ uid, bytes, startTime }))
}

/** [uid, record JSON, uid, record JSON, …] → records. */
export function toRecords (flat: readonly string[]): UsageRecord[] {
  const out: UsageRecord[] = []
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const r = JSON.parse(flat[i + 1] as string) as RecordJson
    out.push({
      uid: flat[i] as string,
      bytes: r.b,
      requests: r.r,
      fileTypes: r.ft,
      ips: Array.isArray(r.ips) ? r.ips : [],
      sessions: Array.isArray(r.s) ? r.s : [],
      startTime: r.st,
      lastActivity: r.la,
      qualified: r.q
    })
  }
  return out
}

/** An outbox hash (HGETALL, flat) → entry; lastError/lastAttemptAt are absent until a failure, as in MemoryStore. */
export function toEntry (flat: readonly string[]): OutboxEntry {
  const h = new Map<string, string>()
  for (let i = 0; i + 1 < flat.length; i += 2) h.set(flat[i] as string, flat[i + 1] as string)
  const entry: OutboxEntry = {
    seq: Number(h.get('seq')),
    reportId: h.get('report_id') ?? '',
    createdAt: Number(h.get('created_at')),
    body: h.get('body') ?? '',
    uids: Number(h.get('uids')),
    bytes: Number(h.get('bytes')),
    attempts: Number(h.get('attempts') ?? 0)
  }
  const lastError = h.get('last_error')
  const lastAttempt = h.get('last_attempt_at')
  if (lastError !== undefined) entry.lastError = lastError
  if (lastAttempt !== undefined) entry.lastAttemptAt = Number(lastAttempt)
  // Since refused reports are parked (src/store/redis-outbox-scripts.ts).
  const lastStatus = h.get('last_status')
  const rejections = Number(h.get('rejections') ?? 0)
  const parkedAt = h.get('parked_at')
  if (lastStatus !== undefined) entry.lastStatus = Number(lastStatus)
  if (rejections > 0) entry.rejections = rejections
  if (parkedAt !== undefined) entry.parkedAt = Number(parkedAt)
  return entry
}
