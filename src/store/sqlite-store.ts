import { availableParallelism } from 'node:os'
import { resolve } from 'node:path'
import type Database from 'better-sqlite3'
import { StoreClosedError, StoreError } from '../errors.ts'
import {
  checkRendered, compareRecords, isExpired, mergeDelta, sealDecision, systemClock
} from '../meter/index.ts'
import type {
  Clock, ExpireResult, FlushResult, OutboxEntry, OutboxStats, RenderedReport, SealRequest, SealResult,
  StoreCounters, UsageDelta, UsagePolicy, UsageRecord, UsageStore, UsageSummary
} from '../meter/index.ts'
import type { CommittedLogCursor, FailureDetail, LogCursor, OutboxItem } from '../meter/index.ts'
import { SqliteAccess } from './access-sqlite.ts'
import { CallerError, messageOf, runWithBusyRetry } from './sqlite-busy-retry.ts'
import { SqliteFlushThread, parseMarkedFlush } from './sqlite-flush-client.ts'
import type { MarkedFlush } from './sqlite-flush-client.ts'
import { SqliteLease } from './sqlite-lease.ts'
import { openSqlite } from './sqlite-open.ts'
import { SqliteOutbox } from './sqlite-outbox.ts'
import { columnsToRecord, toRecord } from './sqlite-schema.ts'
import { prepareStatements, readCounters } from './sqlite-statements.ts'
import type { SqliteStatements } from './sqlite-statements.ts'
import { Totals } from './sqlite-totals.ts'

/** `meta` key of a log's committed position (`LogCursor`), followed by the log's key. */
const LOG_CURSOR_PREFIX = 'log_cursor:'
/** `meta` key of the flush thread's last committed flush (a {@link MarkedFlush} as JSON). */
const MARKED_FLUSH = 'flush_thread_last'

type NumericCounter = { [K in keyof StoreCounters]: StoreCounters[K] extends number ? K : never }[keyof StoreCounters]

/** Options of a {@link SqliteStore}. */
export interface SqliteStoreOptions {
  /** Time of the reporter lease. @default systemClock */
  clock?: Clock | undefined
  /**
   * Flush on a worker thread of its own (sqlite-flush-client.ts) rather than
   * on the caller's event loop. Never for `:memory:`, whose data no other
   * connection sees. @default whether this process may run on more than one CPU
   */
  flushThread?: boolean | undefined
}

/**
 * `sqlite:PATH` — the embedded default: durable, for one instance (or several
 * processes of one host sharing the file, e.g. `--workers N`). Every method is one SQLite
 * transaction (an explicit one, or a single statement, which SQLite runs as
 * its own) over statements prepared once; merge, expiry and seal rules are
 * the shared ones of `src/meter/usage-record.ts`, applied in JS inside the
 * transaction, so this store agrees with MemoryStore value for value.
 */
export class SqliteStore implements UsageStore {
  readonly kind = 'sqlite'
  /** A seal commits with `synchronous = FULL` (see `seal`). */
  readonly durability = Object.freeze({ durable: true, code: 'sqlite-full' })
  readonly policy: UsagePolicy
  /** The database file (absolute), or `:memory:`. */
  readonly path: string
  /** Grants, sessions and use counts (docs/access.md), in this file for every process on it. */
  readonly access: SqliteAccess
  readonly #db: Database.Database
  #closed = false

  /** Statements prepared once (src/store/sqlite-statements.ts). */
  readonly #sql: SqliteStatements
  readonly #outbox: SqliteOutbox
  readonly #lease: SqliteLease

  readonly #flushTx
  readonly #thread: SqliteFlushThread | undefined
  readonly #expireTx
  readonly #sealTx
  readonly #ackTx
  readonly #summaryTx
  readonly #leaseTx
  readonly #releaseTx

  /**
   * Open (or create) the store at `path`; a relative path is resolved against
   * the working directory and missing parent directories are created.
   * `:memory:` gives a private in-memory database (tests).
   * @throws {StoreError} when the file cannot be opened or was written by a newer schema.
   */
  constructor (path: string, policy: UsagePolicy, options: SqliteStoreOptions = {}) {
    this.policy = Object.freeze({ ...policy })
    const clock = options.clock ?? systemClock
    this.path = path === ':memory:' ? path : resolve(path)
    const db = openSqlite(this.path)
    this.#db = db

    this.#sql = prepareStatements(db)
    this.#outbox = new SqliteOutbox(db, { add: (counter, n) => this.#add(counter, n), set: (key, value) => this.#sql.setMeta.run(key, value) })
    this.#lease = new SqliteLease(this.#sql, clock)
    this.access = new SqliteAccess(db, (operation, fn) => this.#run(operation, fn))
    this.#thread = !(options.flushThread ?? availableParallelism() > 1) || this.path === ':memory:'
      ? undefined
      : new SqliteFlushThread(this.path, this.policy, () => parseMarkedFlush(this.#sql.getMeta.get(MARKED_FLUSH)))

    // Writers take the write lock up front (BEGIN IMMEDIATE): a deferred
    // transaction that reads and then writes fails with SQLITE_BUSY_SNAPSHOT,
    // without waiting, when another process committed in between.
    this.#flushTx = db.transaction((deltas: readonly UsageDelta[], cursor: LogCursor | undefined, token?: string) => {
      const result = this.#flushIn(deltas)
      // In the same transaction as the deltas it covers.
      if (cursor !== undefined) this.#sql.setMeta.run(`${LOG_CURSOR_PREFIX}${cursor.key}`, cursor.position)
      if (token !== undefined) this.#sql.setMeta.run(MARKED_FLUSH, JSON.stringify({ token, result } satisfies MarkedFlush))
      return result
    }).immediate
    this.#expireTx = db.transaction((now: number) => this.#expireIn(now)).immediate
    this.#sealTx = db.transaction((request: SealRequest) => this.#sealIn(request)).immediate
    this.#ackTx = db.transaction((reportId: string, now: number) => this.#ackIn(reportId, now)).immediate
    this.#summaryTx = db.transaction((top: number) => this.#summaryIn(top)).deferred
    this.#leaseTx = db.transaction((holder: string, ttlMs: number) => this.#lease.hold(holder, ttlMs)).immediate
    this.#releaseTx = db.transaction((holder: string) => this.#lease.release(holder)).immediate
  }

  async flush (deltas: readonly UsageDelta[], _batchId?: string, cursor?: LogCursor): Promise<FlushResult> {
    if (this.#closed) throw new StoreClosedError()
    return await (this.#thread?.flush(deltas, cursor) ?? this.#run('flush', () => this.#flushTx(deltas, cursor)))
  }

  /** Resolves true once flushes run on the flush thread, false when they never will (tests, diagnostics). */
  async flushThreadReady (): Promise<boolean> { return await (this.#thread?.ready() ?? Promise.resolve(false)) }

  /** The flush thread's flush: {@link flush}'s transaction, which also records `token` and the result. */
  async flushMarked (deltas: readonly UsageDelta[], cursor: LogCursor | undefined, token: string): Promise<FlushResult> {
    return this.#run('flush', () => this.#flushTx(deltas, cursor, token))
  }

  /** A flush here is one transaction: never applied in part, so never a `replayTo`. */
  async logCursor (key: string): Promise<CommittedLogCursor> {
    return this.#run('logCursor', () => ({ position: Number(this.#sql.getMeta.get(`${LOG_CURSOR_PREFIX}${key}`) ?? 0) }))
  }

  async expire (now: number): Promise<ExpireResult> {
    return this.#run('expire', () => this.#expireTx(now))
  }

  async seal (request: SealRequest): Promise<SealResult> {
    // A seal must not be rolled back by a power loss once its reports may
    // have been delivered: the records would come back and be reported
    // again under a new report_id. Seals are rare.
    return this.#run('seal', () => this.#synced(() => this.#sealTx(request)))
  }

  /**
   * Run `fn` with a commit that syncs the WAL (`synchronous = FULL`), which
   * also makes every earlier commit durable: for the writes a power loss must
   * never roll back once a report may have gone out under their ids.
   */
  #synced<T> (fn: () => T): T {
    this.#db.pragma('synchronous = FULL')
    try {
      return fn()
    } finally {
      this.#db.pragma('synchronous = NORMAL')
    }
  }

  /**
   * The reporter lease, for several processes on one file (`--workers N`):
   * takes a free or expired lease, or renews `holder`'s, for `ttlMs`, and
   * resolves its fencing number (> 0; bumped for every new holder), or 0
   * while another holder has it. A lease whose holder's process has ended
   * (SIGKILL, crash) is free at once rather than after its TTL, so a
   * restarted single process is the reporter from its first tick, and a
   * graceful stop right after a restart still seals and delivers.
   */
  async leadership (holder: string, ttlMs: number): Promise<number> {
    return this.#run('leadership', () => this.#leaseTx(holder, Math.max(1, Math.round(ttlMs))))
  }

  /** Free the lease if `holder` has it, so that another process takes over at its next tick. */
  async releaseLeadership (holder: string): Promise<void> {
    await this.#run('releaseLeadership', () => this.#releaseTx(holder))
  }

  async nextSealAt (): Promise<number | undefined> {
    return this.#run('nextSealAt', () => this.#nextSeal())
  }

  async outboxHead (): Promise<OutboxEntry | undefined> {
    return this.#run('outboxHead', () => this.#outbox.head())
  }

  async outboxAck (reportId: string, now: number): Promise<boolean> {
    return this.#run('outboxAck', () => this.#ackTx(reportId, now))
  }

  async outboxFail (reportId: string, error: string, now: number, detail: FailureDetail = {}): Promise<void> {
    return this.#run('outboxFail', () => this.#outbox.fail(reportId, error, now, detail))
  }

  async outboxPark (reportId: string, error: string, now: number, detail: FailureDetail = {}): Promise<boolean> {
    return this.#run('outboxPark', () => this.#outbox.park(reportId, error, now, detail))
  }

  async outboxSplit (reportId: string, parts: readonly RenderedReport[], error: string, now: number, detail: FailureDetail = {}): Promise<boolean> {
    // Synced like a seal: rolled back after one half was delivered, the
    // original would be sent again and bill that half twice.
    return this.#run('outboxSplit', () => this.#synced(() => this.#outbox.split(reportId, parts, error, now, detail)))
  }

  async outboxRetry (target: string | { all: true }): Promise<string[]> {
    return this.#run('outboxRetry', () => this.#outbox.retry(target))
  }

  async outboxDrop (reportId: string, options: { force?: boolean | undefined } = {}): Promise<OutboxItem | 'not-parked' | 'unknown'> {
    return this.#run('outboxDrop', () => this.#outbox.drop(reportId, options.force === true))
  }

  async outboxStats (): Promise<OutboxStats> {
    return this.#run('outboxStats', () => this.#outbox.stats())
  }

  async outboxList (): Promise<OutboxItem[]> {
    return this.#run('outboxList', () => this.#outbox.list())
  }

  async counters (): Promise<StoreCounters> {
    return this.#run('counters', () => readCounters(this.#sql))
  }

  async summary (top: number): Promise<UsageSummary> {
    return this.#run('summary', () => this.#summaryTx(top))
  }

  async records (): Promise<UsageRecord[]> {
    return this.#run('records', () => this.#sql.allRecords.all().map(toRecord))
  }

  async outbox (): Promise<OutboxEntry[]> {
    return this.#run('outbox', () => this.#outbox.all())
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#thread?.close()
    try {
      this.#db.close()
    } catch (err) {
      throw new StoreError(`closing the sqlite store failed: ${messageOf(err)}`, { cause: err })
    }
  }

  #flushIn (deltas: readonly UsageDelta[]): FlushResult {
    const result: FlushResult = { uids: deltas.length, created: 0, qualified: 0, discarded: [] }
    let discardedBytes = 0
    const totals = new Totals()
    for (const delta of deltas) {
      // Read inside the loop: a batch may hold the same uid twice.
      const row = this.#sql.getRecord.get(delta.uid)
      const before = row === undefined ? undefined : columnsToRecord(row)
      const rowid = row?.[9]
      const outcome = mergeDelta(before, delta, this.policy)
      if (before !== undefined) totals.remove(before)
      totals.add(outcome.record)
      if (outcome.discarded !== undefined) {
        result.discarded.push(outcome.discarded)
        discardedBytes += outcome.discarded.bytes
      }
      if (outcome.created) result.created++
      if (outcome.record.qualified && (outcome.created || before?.qualified !== true)) result.qualified++
      this.#put(before, rowid, outcome.record)
    }
    this.#add('accumulator_cleanups', result.discarded.length)
    this.#add('bytes_discarded', discardedBytes)
    this.#add('total_recorded_uids', result.created)
    this.#applyTotals(totals)
    return result
  }

  /** Write `record`, the row that was `before` at `rowid` (undefined: none). */
  #put (before: UsageRecord | undefined, rowid: number | undefined, r: UsageRecord): void {
    const [fileTypes, ips, sessions] = [JSON.stringify(r.fileTypes), JSON.stringify(r.ips), JSON.stringify(r.sessions)]
    if (before === undefined || rowid === undefined) {
      this.#sql.insertRecord.run(r.uid, r.bytes, r.requests, fileTypes, ips, sessions, r.startTime, r.lastActivity, r.qualified ? 1 : 0)
    } else if (before.startTime === r.startTime && before.qualified === r.qualified) {
      this.#sql.updateUsage.run(r.bytes, r.requests, fileTypes, ips, sessions, r.lastActivity, rowid)
    } else {
      this.#sql.updateRecord.run(r.bytes, r.requests, fileTypes, ips, sessions, r.startTime, r.lastActivity, r.qualified ? 1 : 0, rowid)
    }
  }

  #expireIn (now: number): ExpireResult {
    const result: ExpireResult = { discarded: [] }
    const totals = new Totals()
    // Expired grants, sessions and use counts too: reads skip them, only this removes them.
    this.access.deleteExpired(now)
    // The index narrows the scan (with 1 ms to spare for float rounding);
    // isExpired decides, so the rule stays the shared one.
    for (const row of this.#sql.expiryCandidates.all(now - this.policy.accumulatorTimeoutMs + 1)) {
      const record = toRecord(row)
      if (!isExpired(record, now, this.policy)) continue
      this.#sql.deleteRecord.run(record.uid)
      totals.remove(record)
      result.discarded.push({ uid: record.uid, bytes: record.bytes, startTime: record.startTime })
      this.#add('accumulator_cleanups', 1)
      this.#add('bytes_discarded', record.bytes)
    }
    this.#applyTotals(totals)
    return result
  }

  #sealIn (request: SealRequest): SealResult {
    const { now, intervalMs } = request
    const force = request.force === true
    const scheduled = this.#nextSeal()
    const decision = sealDecision({ nextSealAt: scheduled, scheduledAt: this.#metaNumber('scheduled_at') }, now, force)
    if (decision === 'schedule') {
      this.#schedule(now, intervalMs)
      return { sealed: false, reports: [], nextSealAt: now + intervalMs }
    }
    if (decision === 'wait') return { sealed: false, reports: [], nextSealAt: scheduled as number }
    const qualified = this.#sql.qualifiedRecords.all().map(toRecord).sort(compareRecords)
    let rendered: RenderedReport[] = []
    if (qualified.length > 0) {
      try {
        rendered = checkRendered(qualified, request.render(qualified, now))
      } catch (err) {
        throw new CallerError(err)
      }
    }
    const reports: OutboxEntry[] = rendered.map((r) => {
      const { lastInsertRowid } = this.#sql.insertOutbox.run(r.reportId, now, r.body, r.uids, r.bytes)
      return { seq: Number(lastInsertRowid), reportId: r.reportId, createdAt: now, body: r.body, uids: r.uids, bytes: r.bytes, attempts: 0 }
    })
    this.#sql.deleteQualified.run()
    const totals = new Totals()
    for (const record of qualified) totals.remove(record)
    this.#applyTotals(totals)
    this.#add('reports_created', reports.length)
    if (reports.length > 0) this.#add('windows_sealed', 1)
    this.#schedule(now, intervalMs)
    return { sealed: true, reports, nextSealAt: now + intervalMs }
  }

  #ackIn (reportId: string, now: number): boolean {
    const bytes = this.#sql.deleteOutbox.get(reportId)
    if (bytes === undefined) return false
    this.#add('total_reports_sent', 1)
    this.#add('total_bytes_reported', bytes)
    this.#sql.setMeta.run('last_success_at', now)
    return true
  }

  #summaryIn (top: number): UsageSummary {
    // The totals kept in meta: four rows, not a scan of every record (the
    // dashboard asks every second).
    const summary: UsageSummary = {
      qualifiedUids: this.#metaNumber('q_uids') ?? 0,
      pendingUids: this.#metaNumber('p_uids') ?? 0,
      qualifiedBytes: this.#metaNumber('q_bytes') ?? 0,
      pendingBytes: this.#metaNumber('p_bytes') ?? 0,
      top: []
    }
    const n = Math.max(0, Math.trunc(top))
    if (n === 0) return summary
    // Take every record tied with the n-th by bytes, then order with
    // compareRecords: SQLite's BINARY collation orders uids by UTF-8 bytes,
    // JS by UTF-16 units, and the tie-break must be the same in every store.
    const cutoff = this.#sql.topCutoff.get(n - 1) ?? 0
    summary.top = this.#sql.recordsFrom.all(cutoff).map(toRecord).sort(compareRecords).slice(0, n)
    return summary
  }

  #nextSeal (): number | undefined {
    return this.#metaNumber('next_seal_at')
  }

  #metaNumber (key: string): number | undefined {
    const value = this.#sql.getMeta.get(key)
    return value === undefined || value === null ? undefined : Number(value)
  }

  /** The next seal at `now + intervalMs`, set at `now` (see sealDecision). */
  #schedule (now: number, intervalMs: number): void {
    this.#sql.setMeta.run('next_seal_at', now + intervalMs)
    this.#sql.setMeta.run('scheduled_at', now)
  }

  #applyTotals (t: Totals): void {
    if (t.qUids !== 0) this.#sql.addMeta.run(t.qUids, 'q_uids')
    if (t.qBytes !== 0) this.#sql.addMeta.run(t.qBytes, 'q_bytes')
    if (t.pUids !== 0) this.#sql.addMeta.run(t.pUids, 'p_uids')
    if (t.pBytes !== 0) this.#sql.addMeta.run(t.pBytes, 'p_bytes')
  }

  #add (counter: NumericCounter, n: number): void {
    if (n !== 0) this.#sql.addMeta.run(n, counter)
  }

  /** Run one operation: closed check, a locked database retried (src/store/sqlite-busy-retry.ts). */
  #run<T> (operation: string, fn: () => T): Promise<T> {
    return runWithBusyRetry(operation, fn, () => this.#closed)
  }
}
