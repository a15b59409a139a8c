import type {
  DiscardedUsage, FailureDetail, OutboxEntry, OutboxItem, RenderedReport, StoreCounters, UsageDelta, UsagePolicy, UsageRecord
} from './types.ts'

/**
 * The port between the collector and durable state. `src/store/` implements it
 * for `memory:`, `sqlite:` and `redis://`; one contract suite
 * (test/store/store-contract.ts) holds every implementation to the same guarantees:
 *
 * 1. `flush` merges a whole batch atomically (all or nothing) with
 *    {@link mergeDelta}'s rules, applying the threshold to the store's global
 *    sums, not to one process's share.
 * 2. `seal` atomically moves every qualified record into reports written to the
 *    outbox (rendered by the caller's `render`, inside the same transaction),
 *    removes those records and leaves sub-threshold ones in place. A batch
 *    flushed after `seal` returns belongs to the next window.
 * 3. The outbox is delivered in creation (`seq`) order, except that the
 *    halves of a split take the place of the report they replace and a
 *    report put back by `outboxRetry` goes to the head; parked reports wait
 *    aside. An entry's `body` never changes; `ack` removes an entry once (a
 *    second ack of the same id returns false and counts nothing).
 * 4. Counters change in the same atomic step as the state they describe.
 */
export interface UsageStore {
  /** `memory`, `sqlite` or `redis`. */
  readonly kind: string
  /** The policy the store applies; fixed at construction. */
  readonly policy: UsagePolicy

  /**
   * Merge a batch of deltas (one transaction / one round-trip). `batchId`
   * names the batch: after a failed flush the collector sends the same
   * batch again with the same id, so a store whose failures can be ambiguous
   * (the write happened, the answer was lost) must apply an id at most once
   * and answer a repeat with the first result. Stores whose failures are
   * never ambiguous (memory, SQLite in-process) may ignore it.
   *
   * With `cursor`, the deltas were produced from a log up to
   * `cursor.position`: the position is committed in the same atomic step as
   * the deltas, so that a reader resuming from {@link logCursor} neither
   * loses nor repeats a line (the nginx engine, docs/engines.md).
   */
  flush (deltas: readonly UsageDelta[], batchId?: string, cursor?: LogCursor): Promise<FlushResult>
  /**
   * The committed position of the log named `key` (0 when none was
   * committed), and `replayTo` when a flush with a cursor may have been
   * applied in part (Redis writes a batch in chunks): the reader must then
   * read exactly the lines up to `replayTo` first, so that the same batch
   * (same deltas, same chunks, same id) is sent again and the chunks
   * already applied are skipped.
   */
  logCursor (key: string): Promise<CommittedLogCursor>
  /** Discard sub-threshold records whose cycle began more than the timeout before `now`. */
  expire (now: number): Promise<ExpireResult>
  /**
   * Seal the window when it is due or when `force` is set, as
   * `sealDecision` (seal-schedule.ts) says: due at `nextSealAt`, and at once when `now` is
   * before the time the schedule was set (the wall clock went back).
   * The first call on a fresh store only schedules the first seal at
   * `now + intervalMs` (unless forced). Every seal schedules the next one.
   */
  seal (request: SealRequest): Promise<SealResult>
  /** When the next seal is due (ms since the epoch), or undefined before the first schedule. */
  nextSealAt (): Promise<number | undefined>

  /** The next report to deliver: the head of the delivery order. Parked reports are never the head. */
  outboxHead (): Promise<OutboxEntry | undefined>
  /** Remove a delivered report (pending or parked) and count it as sent. Returns false when it is not in the outbox. */
  outboxAck (reportId: string, now: number): Promise<boolean>
  /**
   * Count a failed attempt for a report: attempts, last error and status, and
   * (`detail.rejected`) one more refusal. `error` must hold no secret.
   */
  outboxFail (reportId: string, error: string, now: number, detail?: FailureDetail): Promise<void>
  /**
   * Count a refused attempt (as `outboxFail` with `rejected`) and park the
   * report, in one step: it stays in the store, aside from the delivery
   * order, until `outboxRetry` or `outboxDrop`. Returns false (and changes
   * nothing) when the report is not pending.
   */
  outboxPark (reportId: string, error: string, now: number, detail?: FailureDetail): Promise<boolean>
  /**
   * Count a failed attempt and replace a pending report with `parts` (its
   * body split: the receiver answered 413), in one step: the parts take its
   * place in the delivery order, get new seqs and the report's creation time,
   * and must account for exactly its uids and bytes ({@link checkSplit}).
   * Returns false (and changes nothing) when the report is not pending.
   * @throws {Error} when the parts do not account for the report, or an id is already in the outbox
   */
  outboxSplit (reportId: string, parts: readonly RenderedReport[], error: string, now: number, detail?: FailureDetail): Promise<boolean>
  /**
   * Put parked reports back at the head of the delivery order, unchanged
   * (same id, same body), their refusals forgotten: one by id, or all of
   * them in creation order. Resolves the ids put back, in delivery order
   * (none when `target` names no parked report).
   */
  outboxRetry (target: string | { all: true }): Promise<string[]>
  /**
   * Delete a parked report for good (its usage is never billed) and count it.
   * A pending report is refused unless `force`. Resolves what was dropped, or
   * why nothing was.
   */
  outboxDrop (reportId: string, options?: { force?: boolean | undefined }): Promise<OutboxItem | 'not-parked' | 'unknown'>
  /** Pending and parked reports, their bytes, and the oldest pending creation time. */
  outboxStats (): Promise<OutboxStats>
  /** Every entry without its body: pending ones in delivery order, then parked ones by seq. */
  outboxList (): Promise<OutboxItem[]>

  /** Shared counters. */
  counters (): Promise<StoreCounters>
  /** Counts of qualified and pending uids plus the `top` (a non-negative integer) records by bytes. */
  summary (top: number): Promise<UsageSummary>

  /** Every record (O(n); diagnostics and tests). */
  records (): Promise<UsageRecord[]>
  /** Every outbox entry with its body, in the order of {@link outboxList} (O(n); diagnostics and tests). */
  outbox (): Promise<OutboxEntry[]>

  /**
   * Shared stores: hold the reporter lease, so that one instance at a time
   * seals windows and delivers the outbox. Takes a free (or expired) lease or
   * renews `holder`'s for `ttlMs`; resolves a fencing number > 0 while
   * `holder` has it and 0 while another instance does. A store only one
   * process can use (memory) leaves this out: that process is always the reporter.
   */
  leadership? (holder: string, ttlMs: number): Promise<number>
  /** Give the lease up if `holder` has it (graceful stop), so another instance takes over at once. */
  releaseLeadership? (holder: string): Promise<void>

  /** Release the store. Idempotent. Later calls reject with `SM_ERR_STORE_CLOSED`. */
  close (): Promise<void>

  /**
   * Whether a sealed window survives a restart of the store (its server, its
   * machine) before its reports go out, as the store last found out; absent
   * when the store cannot tell. `/health` shows it.
   */
  readonly durability?: StoreDurability | undefined
}

/**
 * What a store promises about a seal surviving a restart, so that what was
 * delivered is never delivered again under another id (docs/scaling.md,
 * "Redis settings").
 */
export interface StoreDurability {
  /** True when every seal is durable before its reports are handed out for delivery. */
  durable: boolean
  /**
   * A short code: how the store makes seals durable (`sqlite-full`,
   * `aof-always`, `waitaof`, `replicas`, or several joined by `+`), or why
   * it cannot (`aof-off`, `fsync-everysec`, `fsync-no`, `config-hidden`,
   * `wait-denied`, `memory`; `unknown` until a redis store has reached its server).
   * Never a host name or a version.
   */
  code: string
}

/** How far into a log (a byte offset) the usage of a flush goes. */
export interface LogCursor {
  /** Names the log (the engine's access log). */
  key: string
  /** Byte offset of the first line not metered yet. */
  position: number
}

/** A log's committed position (`UsageStore.logCursor`). */
export interface CommittedLogCursor {
  position: number
  /** The end of a batch that may have been applied in part; absent when none is. */
  replayTo?: number | undefined
}

/** What one `flush` did. */
export interface FlushResult {
  /** Deltas merged. */
  uids: number
  /** Cycles started (a new record). */
  created: number
  /** Records that crossed the threshold in this flush. */
  qualified: number
  /** Expired cycles discarded because newer bytes arrived after their timeout. */
  discarded: DiscardedUsage[]
}

/** What one `expire` did. */
export interface ExpireResult {
  discarded: DiscardedUsage[]
}

/** Arguments of {@link UsageStore.seal}. */
export interface SealRequest {
  /** The current time, ms since the epoch. */
  now: number
  /** Length of a window in ms; the next seal is scheduled `intervalMs` after this one. */
  intervalMs: number
  /** Seal even if the window is not due (graceful stop). */
  force?: boolean | undefined
  /**
   * Turns the qualified records (sorted by bytes descending, then uid) into
   * report bodies. Called inside the store's transaction; must be pure and
   * synchronous. Not called when there is no qualified record.
   */
  render (records: readonly UsageRecord[], sealedAt: number): RenderedReport[]
}

/** What one `seal` did. */
export interface SealResult {
  /** True when the window was sealed (even with no qualified uid). */
  sealed: boolean
  /** Reports written to the outbox by this seal, in order. */
  reports: OutboxEntry[]
  /** When the next seal is due. */
  nextSealAt: number
}

/** Outbox state for `/traffic` and `/metrics`. */
export interface OutboxStats {
  /** Reports waiting for delivery (parked ones not included). */
  pending: number
  /** Bytes of usage in them. */
  pendingBytes: number
  /** Creation time of the oldest pending report, or undefined when none is pending. */
  oldestCreatedAt: number | undefined
  /** Reports parked after repeated refusals. */
  parked: number
  /** Bytes of usage in them (not billed until retried). */
  parkedBytes: number
}

/** The current window at a glance. */
export interface UsageSummary {
  qualifiedUids: number
  pendingUids: number
  qualifiedBytes: number
  pendingBytes: number
  /** Largest records first. */
  top: UsageRecord[]
}

/** Zeroed counters, the starting point of every store. */
export function emptyCounters (): StoreCounters {
  return {
    total_recorded_uids: 0,
    reports_created: 0,
    total_reports_sent: 0,
    total_bytes_reported: 0,
    reports_failed: 0,
    accumulator_cleanups: 0,
    bytes_discarded: 0,
    windows_sealed: 0,
    last_success_at: 0,
    last_error_at: 0,
    last_error: '',
    reports_split: 0,
    reports_parked: 0,
    reports_dropped: 0,
    reports_dropped_bytes: 0
  }
}

/**
 * What every store checks about `render`'s output before writing it: each
 * qualified uid is in exactly one report, and report ids are distinct. A
 * render that dropped a uid would delete its usage without a trace.
 * @returns `rendered`, unchanged
 * @throws {Error} when the output does not account for every record
 */
export function checkRendered (records: readonly UsageRecord[], rendered: readonly RenderedReport[]): RenderedReport[] {
  let uids = 0
  let bytes = 0
  for (const r of rendered) {
    uids += r.uids
    bytes += r.bytes
  }
  let expected = 0
  for (const r of records) expected += r.bytes
  if (uids !== records.length || bytes !== expected) {
    throw new Error(`render accounted for ${uids} uids / ${bytes} bytes of ${records.length} uids / ${expected} bytes`)
  }
  if (new Set(rendered.map((r) => r.reportId)).size !== rendered.length) throw new Error('render repeated a report id')
  return rendered.slice()
}

/**
 * What every store checks before replacing a report with `parts`: at least
 * two, distinct ids, none the report's own, and exactly its uids and bytes.
 * A split that lost a uid would delete its usage without a trace.
 * @throws {Error} when the parts do not account for the report
 */
export function checkSplit (entry: Pick<OutboxEntry, 'reportId' | 'uids' | 'bytes'>, parts: readonly RenderedReport[]): void {
  let uids = 0
  let bytes = 0
  for (const p of parts) {
    uids += p.uids
    bytes += p.bytes
  }
  if (parts.length < 2) throw new Error(`a split needs at least two parts, got ${parts.length}`)
  if (uids !== entry.uids || bytes !== entry.bytes) {
    throw new Error(`split accounted for ${uids} uids / ${bytes} bytes of ${entry.uids} uids / ${entry.bytes} bytes`)
  }
  const ids = new Set(parts.map((p) => p.reportId))
  if (ids.size !== parts.length || ids.has(entry.reportId)) throw new Error('split repeated a report id')
}

/** `entry` without its body, with the body's size in bytes. */
export function outboxItem (entry: OutboxEntry): OutboxItem {
  const { body, ...item } = entry
  return { ...item, bodyBytes: Buffer.byteLength(body) }
}

/** Sort order of records inside a report and of `summary().top`. */
export function compareRecords (a: UsageRecord, b: UsageRecord): number {
  return b.bytes - a.bytes || (a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0)
}
