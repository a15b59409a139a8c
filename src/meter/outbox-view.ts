import { unixSeconds } from './report-builder.ts'
import { ageSeconds } from './traffic-status.ts'
import type { OutboxItem } from './types.ts'
import type { OutboxStats } from './usage-store.ts'

/** One outbox entry as `GET /api/outbox` and `streammeter outbox list --json` show it: no body, no secret. */
export interface OutboxItemView {
  report_id: string
  seq: number
  state: 'pending' | 'parked'
  /** When the window was sealed, unix seconds. */
  created_at: number
  uids: number
  /** Bytes of usage in the report. */
  bytes: number
  /** Size of the JSON body sent, bytes. */
  body_bytes: number
  attempts: number
  /** Refusals (a lasting 4xx) since it was written or last put back. */
  rejections: number
  /** The endpoint's status in the last failed attempt, or null (no answer, or no failure). */
  last_status: number | null
  last_error: string | null
  last_attempt_at: number | null
  parked_at: number | null
}

/** The outbox document of `GET /api/outbox` and `streammeter outbox list --json`. */
export interface OutboxView {
  stats: {
    pending: number
    pending_bytes: number
    parked: number
    parked_bytes: number
    oldest_age_seconds: number | null
  }
  /** In delivery order. */
  pending: OutboxItemView[]
  /** By seq. */
  parked: OutboxItemView[]
}

/** An {@link OutboxItem} in the snake_case, unix-seconds shape of the admin endpoints. */
export function outboxItemView (item: OutboxItem): OutboxItemView {
  const seconds = (ms: number | undefined): number | null => ms === undefined ? null : unixSeconds(ms)
  return {
    report_id: item.reportId,
    seq: item.seq,
    state: item.parkedAt === undefined ? 'pending' : 'parked',
    created_at: unixSeconds(item.createdAt),
    uids: item.uids,
    bytes: item.bytes,
    body_bytes: item.bodyBytes,
    attempts: item.attempts,
    rejections: item.rejections ?? 0,
    last_status: item.lastStatus ?? null,
    last_error: item.lastError ?? null,
    last_attempt_at: seconds(item.lastAttemptAt),
    parked_at: seconds(item.parkedAt)
  }
}

/** The outbox document from a store's stats and listing, at `now` (ms). */
export function outboxView (stats: OutboxStats, items: readonly OutboxItem[], now: number): OutboxView {
  const views = items.map(outboxItemView)
  return {
    stats: {
      pending: stats.pending,
      pending_bytes: stats.pendingBytes,
      parked: stats.parked,
      parked_bytes: stats.parkedBytes,
      oldest_age_seconds: ageSeconds(stats.oldestCreatedAt, now)
    },
    pending: views.filter((v) => v.state === 'pending'),
    parked: views.filter((v) => v.state === 'parked')
  }
}
