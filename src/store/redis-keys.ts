import { StoreError } from '../errors.ts'

/**
 * The keys of one store. Every key starts with `{<prefix>}`, one Redis Cluster
 * hash tag, so all of them hash to one slot: Cluster refuses a script whose
 * keys span slots, and every write here is a multi-key script. One store is
 * therefore one shard (docs/scaling.md).
 */
export interface RedisKeys {
  /** `{p}:records` — hash uid → record JSON: the live records. */
  readonly records: string
  /** `{p}:pending` — sorted set uid → start time of each sub-threshold live record; `expire` reads it. */
  readonly pending: string
  /** `{p}:qualified` — set of the qualified live uids; a seal takes them. */
  readonly qualified: string
  /** `{p}:by-bytes` — sorted set uid → bytes of each live record; `summary().top` reads it. */
  readonly byBytes: string
  /** `{p}:stage` — hash uid → record JSON: what a seal took and has not committed yet. */
  readonly stage: string
  /** `{p}:stage-meta` — hash: `token`, `sealed_at`, `prev_next_seal_at`, `prev_scheduled_at` of the staged seal. */
  readonly stageMeta: string
  /** `{p}:meta` — hash: `next_seal_at`, `scheduled_at` (when it was set); totals of the live records `q_uids`, `q_bytes`, `p_uids`, `p_bytes`; `outbox_bytes`. */
  readonly meta: string
  /** `{p}:counters` — hash of exactly the StoreCounters fields. */
  readonly counters: string
  /** `{p}:seq` — INCR source of outbox seqs; never reset, so a seq is never reused. */
  readonly seq: string
  /** `{p}:outbox` — list of pending report ids in delivery order (src/store/redis-outbox-scripts.ts). */
  readonly outbox: string
  /** `{p}:parked` — sorted set of parked report ids by seq; their bytes are `parked_bytes` of `{p}:meta`. */
  readonly parked: string
  /** `{p}:retried` — set of the pending reports put back at the front of `{p}:outbox` by hand. */
  readonly retried: string
  /** `{p}:report:<report id>` — hash: one outbox entry. */
  readonly reportPrefix: string
  /**
   * `{p}:flushed:<batch id>:<chunk index>` — the result of one chunk of a flush, so that a
   * retried batch skips the chunks Redis already applied (src/store/redis-flusher.ts).
   */
  readonly flushedPrefix: string
  /**
   * `{p}:log-cursor:<log key>` — hash: `position` committed for that log, and
   * `pending_id`, `pending_to` of a batch with a cursor sent and not committed
   * yet (src/store/redis-flusher.ts).
   */
  readonly logCursorPrefix: string
  /** `{p}:lease` (holder, with a TTL) and `{p}:fence` (a counter bumped on every new holder): the reporter lease. */
  readonly lease: string
  readonly fence: string
}

/**
 * The keys of the store under `prefix`.
 * @throws {StoreError} for an empty prefix or one holding `{` or `}` (it would break the hash tag)
 */
export function redisKeys (prefix: string): RedisKeys {
  if (prefix === '' || /[{}]/.test(prefix)) {
    throw new StoreError('the redis store prefix must be non-empty and must not contain "{" or "}"')
  }
  const tag = `{${prefix}}`
  return Object.freeze({
    records: `${tag}:records`,
    pending: `${tag}:pending`,
    qualified: `${tag}:qualified`,
    byBytes: `${tag}:by-bytes`,
    stage: `${tag}:stage`,
    stageMeta: `${tag}:stage-meta`,
    meta: `${tag}:meta`,
    counters: `${tag}:counters`,
    seq: `${tag}:seq`,
    outbox: `${tag}:outbox`,
    parked: `${tag}:parked`,
    retried: `${tag}:retried`,
    reportPrefix: `${tag}:report:`,
    flushedPrefix: `${tag}:flushed:`,
    logCursorPrefix: `${tag}:log-cursor:`,
    lease: `${tag}:lease`,
    fence: `${tag}:fence`
  })
}
