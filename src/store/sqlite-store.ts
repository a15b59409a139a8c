import { mkdirSync, readlinkSync } from 'node:fs'
import { hostname } from 'node:os'
import { dirname, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import Database from 'better-sqlite3'
import { StoreClosedError, StoreError, StreammeterError } from '../errors.ts'
import {
  checkRendered, compareRecords, emptyCounters, isExpired, mergeDelta, sealDecision, systemClock
} from '../meter/index.ts'
import type {
  Clock, ExpireResult, FlushResult, OutboxEntry, OutboxStats, RenderedReport, SealRequest, SealResult,
  StoreCounters, UsageDelta, UsagePolicy, UsageRecord, UsageStore, UsageSummary
} from '../meter/index.ts'
import type { FailureDetail, OutboxItem } from '../meter/index.ts'
import { SqliteOutbox } from './sqlite-outbox.ts'
import { LEASE_KEY, migrate, parseLease, toRecord, toRow } from './sqlite-schema.ts'
import type { LeaseRow, UsageRow } from './sqlite-schema.ts'

/** How long opening the file may wait for another process's lock, in ms (nothing is served yet). */
const OPEN_BUSY_TIMEOUT_MS = 5000
/**
 * How long an operation keeps retrying a database another process has
 * locked before it fails (the collector then keeps its batch and tries again
 * at the next tick), in ms. @default 30000
 */
const BUSY_RETRY_MS = 30_000

type NumericCounter = { [K in keyof StoreCounters]: StoreCounters[K] extends number ? K : never }[keyof StoreCounters]

/** An exception thrown by the caller's `render`: it passes through unwrapped, as in MemoryStore. */
class CallerError {
  readonly error: unknown
  constructor (error: unknown) {
    this.error = error
  }
}

/** Options of a {@link SqliteStore}. */
export interface SqliteStoreOptions {
  /** Time of the reporter lease. @default systemClock */
  clock?: Clock | undefined
}

/**
 * Who can tell whether a lease holder's process still runs: processes that
 * see the same process ids. On Linux that is a pid namespace (containers
 * sharing the file may each have their own); elsewhere one host. Undefined
 * when it cannot be told, and then only the lease's expiry counts.
 */
const PID_SPACE: string | undefined = (() => {
  if (process.platform !== 'linux') return `${process.platform}:${hostname()}`
  try {
    return readlinkSync('/proc/self/ns/pid')
  } catch {
    return undefined
  }
})()

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
  readonly #db: Database.Database
  readonly #clock: Clock
  #closed = false

  readonly #getRecord
  readonly #putRecord
  readonly #deleteRecord
  readonly #expiryCandidates
  readonly #qualifiedRecords
  readonly #deleteQualified
  readonly #allRecords
  readonly #topCutoff
  readonly #recordsFrom
  readonly #insertOutbox
  readonly #deleteOutbox
  readonly #outbox: SqliteOutbox
  readonly #getMeta
  readonly #setMeta
  readonly #addMeta
  readonly #allMeta

  readonly #flushTx
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
    this.#clock = options.clock ?? systemClock
    this.path = path === ':memory:' ? path : resolve(path)
    let db: Database.Database | undefined
    try {
      if (this.path !== ':memory:') mkdirSync(dirname(this.path), { recursive: true })
      db = new Database(this.path)
      // Opening may wait for another process's write lock (a worker's
      // flush): nothing is served yet. After that the timeout is 0 and #run
      // retries a locked database asynchronously, see there.
      db.pragma(`busy_timeout = ${OPEN_BUSY_TIMEOUT_MS}`)
      db.pragma('journal_mode = WAL')
      // NORMAL in WAL mode: a commit survives a crash of this process (the
      // WAL is in the OS page cache) but only a power loss or OS crash can
      // roll back the last commits, and the file stays consistent. That is
      // the flush-interval durability docs/metering.md promises, at a fraction of
      // FULL's fsync per flush. seal() is the exception, see there.
      db.pragma('synchronous = NORMAL')
      migrate(db)
      ensureTotals(db)
      db.pragma('busy_timeout = 0')
    } catch (err) {
      db?.close()
      if (err instanceof StoreError) throw err
      throw new StoreError(`cannot open the sqlite store at ${this.path}: ${messageOf(err)}`, { cause: err })
    }
    this.#db = db

    this.#getRecord = db.prepare<[string], UsageRow>('SELECT * FROM usage WHERE uid = ?')
    this.#putRecord = db.prepare<[UsageRow]>(`
      INSERT INTO usage (uid, bytes, requests, file_types, ips, sessions, start_ms, last_ms, qualified)
      VALUES (@uid, @bytes, @requests, @file_types, @ips, @sessions, @start_ms, @last_ms, @qualified)
      ON CONFLICT (uid) DO UPDATE SET bytes = excluded.bytes, requests = excluded.requests,
        file_types = excluded.file_types, ips = excluded.ips, sessions = excluded.sessions,
        start_ms = excluded.start_ms, last_ms = excluded.last_ms, qualified = excluded.qualified`)
    this.#deleteRecord = db.prepare<[string]>('DELETE FROM usage WHERE uid = ?')
    // rowid order is creation order: the same order MemoryStore's Map iterates in.
    this.#expiryCandidates = db.prepare<[number], UsageRow>(
      'SELECT * FROM usage WHERE qualified = 0 AND start_ms < ? ORDER BY rowid')
    this.#qualifiedRecords = db.prepare<[], UsageRow>('SELECT * FROM usage WHERE qualified = 1')
    this.#deleteQualified = db.prepare<[]>('DELETE FROM usage WHERE qualified = 1')
    this.#allRecords = db.prepare<[], UsageRow>('SELECT * FROM usage ORDER BY rowid')
    this.#topCutoff = db.prepare<[number], number>(
      'SELECT bytes FROM usage ORDER BY bytes DESC LIMIT 1 OFFSET ?').pluck()
    this.#recordsFrom = db.prepare<[number], UsageRow>('SELECT * FROM usage WHERE bytes >= ? ORDER BY bytes DESC')
    this.#insertOutbox = db.prepare<[string, number, string, number, number]>(
      'INSERT INTO outbox (report_id, created_ms, body, uids, bytes) VALUES (?, ?, ?, ?, ?)')
    this.#deleteOutbox = db.prepare<[string], number>('DELETE FROM outbox WHERE report_id = ? RETURNING bytes').pluck()
    this.#getMeta = db.prepare<[string], unknown>('SELECT value FROM meta WHERE key = ?').pluck()
    this.#setMeta = db.prepare<[string, number | string]>(
      'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value')
    this.#addMeta = db.prepare<[number, string]>('UPDATE meta SET value = value + ? WHERE key = ?')
    this.#allMeta = db.prepare<[], { key: string, value: unknown }>('SELECT key, value FROM meta')
    this.#outbox = new SqliteOutbox(db, { add: (counter, n) => this.#add(counter, n), set: (key, value) => this.#setMeta.run(key, value) })

    // Writers take the write lock up front (BEGIN IMMEDIATE): a deferred
    // transaction that reads and then writes fails with SQLITE_BUSY_SNAPSHOT,
    // without waiting, when another process committed in between.
    this.#flushTx = db.transaction((deltas: readonly UsageDelta[]) => this.#flushIn(deltas)).immediate
    this.#expireTx = db.transaction((now: number) => this.#expireIn(now)).immediate
    this.#sealTx = db.transaction((request: SealRequest) => this.#sealIn(request)).immediate
    this.#ackTx = db.transaction((reportId: string, now: number) => this.#ackIn(reportId, now)).immediate
    this.#summaryTx = db.transaction((top: number) => this.#summaryIn(top)).deferred
    this.#leaseTx = db.transaction((holder: string, ttlMs: number) => this.#leaseIn(holder, ttlMs)).immediate
    this.#releaseTx = db.transaction((holder: string) => this.#releaseIn(holder)).immediate
  }

  async flush (deltas: readonly UsageDelta[]): Promise<FlushResult> {
    return this.#run('flush', () => this.#flushTx(deltas))
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
    return this.#run('counters', () => {
      const counters = emptyCounters()
      const slots = counters as unknown as Record<string, number | string>
      for (const { key, value } of this.#allMeta.all()) {
        const slot = slots[key]
        if (typeof slot === 'number') slots[key] = Number(value)
        else if (typeof slot === 'string') slots[key] = String(value)
      }
      return counters
    })
  }

  async summary (top: number): Promise<UsageSummary> {
    return this.#run('summary', () => this.#summaryTx(top))
  }

  async records (): Promise<UsageRecord[]> {
    return this.#run('records', () => this.#allRecords.all().map(toRecord))
  }

  async outbox (): Promise<OutboxEntry[]> {
    return this.#run('outbox', () => this.#outbox.all())
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
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
      const row = this.#getRecord.get(delta.uid)
      const before = row === undefined ? undefined : toRecord(row)
      const outcome = mergeDelta(before, delta, this.policy)
      if (before !== undefined) totals.remove(before)
      totals.add(outcome.record)
      if (outcome.discarded !== undefined) {
        result.discarded.push(outcome.discarded)
        discardedBytes += outcome.discarded.bytes
      }
      if (outcome.created) result.created++
      if (outcome.record.qualified && (outcome.created || before?.qualified !== true)) result.qualified++
      this.#putRecord.run(toRow(outcome.record))
    }
    this.#add('accumulator_cleanups', result.discarded.length)
    this.#add('bytes_discarded', discardedBytes)
    this.#add('total_recorded_uids', result.created)
    this.#applyTotals(totals)
    return result
  }

  #expireIn (now: number): ExpireResult {
    const result: ExpireResult = { discarded: [] }
    const totals = new Totals()
    // The index narrows the scan (with 1 ms to spare for float rounding);
    // isExpired decides, so the rule stays the shared one.
    for (const row of this.#expiryCandidates.all(now - this.policy.accumulatorTimeoutMs + 1)) {
      const record = toRecord(row)
      if (!isExpired(record, now, this.policy)) continue
      this.#deleteRecord.run(record.uid)
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
    const qualified = this.#qualifiedRecords.all().map(toRecord).sort(compareRecords)
    let rendered: RenderedReport[] = []
    if (qualified.length > 0) {
      try {
        rendered = checkRendered(qualified, request.render(qualified, now))
      } catch (err) {
        throw new CallerError(err)
      }
    }
    const reports: OutboxEntry[] = rendered.map((r) => {
      const { lastInsertRowid } = this.#insertOutbox.run(r.reportId, now, r.body, r.uids, r.bytes)
      return { seq: Number(lastInsertRowid), reportId: r.reportId, createdAt: now, body: r.body, uids: r.uids, bytes: r.bytes, attempts: 0 }
    })
    this.#deleteQualified.run()
    const totals = new Totals()
    for (const record of qualified) totals.remove(record)
    this.#applyTotals(totals)
    this.#add('reports_created', reports.length)
    if (reports.length > 0) this.#add('windows_sealed', 1)
    this.#schedule(now, intervalMs)
    return { sealed: true, reports, nextSealAt: now + intervalMs }
  }

  #ackIn (reportId: string, now: number): boolean {
    const bytes = this.#deleteOutbox.get(reportId)
    if (bytes === undefined) return false
    this.#add('total_reports_sent', 1)
    this.#add('total_bytes_reported', bytes)
    this.#setMeta.run('last_success_at', now)
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
    const cutoff = this.#topCutoff.get(n - 1) ?? 0
    summary.top = this.#recordsFrom.all(cutoff).map(toRecord).sort(compareRecords).slice(0, n)
    return summary
  }

  #leaseIn (holder: string, ttlMs: number): number {
    const now = this.#clock.now()
    const lease = parseLease(this.#getMeta.get(LEASE_KEY))
    const live = lease.holder !== null && lease.expiresAt > now
    if (live && lease.holder === holder) {
      this.#setLease({ ...lease, expiresAt: now + ttlMs })
      return lease.fence
    }
    if (live && !holderGone(lease)) return 0
    const fence = lease.fence + 1
    this.#setLease({ holder, expiresAt: now + ttlMs, fence, pid: process.pid, pidSpace: PID_SPACE ?? null })
    return fence
  }

  #releaseIn (holder: string): void {
    const lease = parseLease(this.#getMeta.get(LEASE_KEY))
    // The fence stays: the next holder's number must be greater than every earlier one.
    if (lease.holder === holder) this.#setLease({ holder: null, expiresAt: 0, fence: lease.fence, pid: null, pidSpace: null })
  }

  #setLease (lease: LeaseRow): void {
    this.#setMeta.run(LEASE_KEY, JSON.stringify(lease))
  }

  #nextSeal (): number | undefined {
    return this.#metaNumber('next_seal_at')
  }

  #metaNumber (key: string): number | undefined {
    const value = this.#getMeta.get(key)
    return value === undefined || value === null ? undefined : Number(value)
  }

  /** The next seal at `now + intervalMs`, set at `now` (see sealDecision). */
  #schedule (now: number, intervalMs: number): void {
    this.#setMeta.run('next_seal_at', now + intervalMs)
    this.#setMeta.run('scheduled_at', now)
  }

  #applyTotals (t: Totals): void {
    if (t.qUids !== 0) this.#addMeta.run(t.qUids, 'q_uids')
    if (t.qBytes !== 0) this.#addMeta.run(t.qBytes, 'q_bytes')
    if (t.pUids !== 0) this.#addMeta.run(t.pUids, 'p_uids')
    if (t.pBytes !== 0) this.#addMeta.run(t.pBytes, 'p_bytes')
  }

  #add (counter: NumericCounter, n: number): void {
    if (n !== 0) this.#addMeta.run(n, counter)
  }

  /**
   * Run one operation: closed check, a locked database retried, and
   * unexpected SQLite failures become StoreError.
   *
   * better-sqlite3 is synchronous: with a busy timeout, a transaction that
   * finds another process holding the write lock (a worker's big flush, a
   * backup, an operator's sqlite3 shell) would wait for it on the event loop,
   * and every request of this process with it (a 4 s lock held a small
   * request for 3.2 s). So the timeout is 0: a locked database fails at once
   * with SQLITE_BUSY, and the operation is tried again after a short pause
   * (2 ms doubling to 50 ms, jittered so that workers do not retry in step)
   * on a timer, for up to {@link BUSY_RETRY_MS}. Nothing was written by a
   * try that failed to begin, so trying again is safe; a seal's `render` runs
   * again and makes new report ids, none of which was stored.
   */
  async #run<T> (operation: string, fn: () => T): Promise<T> {
    const started = performance.now()
    for (let attempt = 0; ; attempt++) {
      if (this.#closed) throw new StoreClosedError()
      try {
        return fn()
      } catch (err) {
        if (err instanceof CallerError) throw err.error
        if (err instanceof StreammeterError) throw err
        if (isBusy(err) && performance.now() - started < BUSY_RETRY_MS) {
          await sleep(Math.min(50, 2 ** (attempt + 1)) * (0.5 + Math.random()))
          continue
        }
        throw new StoreError(`sqlite store ${operation} failed: ${messageOf(err)}`, { cause: err })
      }
    }
  }
}

/** Changes to the live-record totals of `meta` (`q_uids`, `q_bytes`, `p_uids`, `p_bytes`) within one transaction. */
class Totals {
  qUids = 0
  qBytes = 0
  pUids = 0
  pBytes = 0

  add (r: UsageRecord): void {
    this.#count(r, 1)
  }

  remove (r: UsageRecord): void {
    this.#count(r, -1)
  }

  #count (r: UsageRecord, sign: 1 | -1): void {
    if (r.qualified) {
      this.qUids += sign
      this.qBytes += sign * r.bytes
    } else {
      this.pUids += sign
      this.pBytes += sign * r.bytes
    }
  }
}

/**
 * The live-record totals `summary()` reads, kept in `meta` by every write
 * since they were added. A file written before then gets them counted once,
 * here, at open.
 */
function ensureTotals (db: Database.Database): void {
  db.transaction(() => {
    const has = db.prepare<[], unknown>("SELECT 1 FROM meta WHERE key = 'q_uids'").pluck().get()
    if (has !== undefined) return
    const rows = db.prepare<[], { qualified: number, n: number, bytes: number }>(
      'SELECT qualified, count(*) AS n, coalesce(sum(bytes), 0) AS bytes FROM usage GROUP BY qualified').all()
    const q = rows.find((r) => r.qualified === 1)
    const p = rows.find((r) => r.qualified !== 1)
    const put = db.prepare<[string, number]>('INSERT INTO meta (key, value) VALUES (?, ?)')
    put.run('q_uids', q?.n ?? 0)
    put.run('q_bytes', q?.bytes ?? 0)
    put.run('p_uids', p?.n ?? 0)
    put.run('p_bytes', p?.bytes ?? 0)
  }).immediate()
}

/**
 * Whether the process that took `lease` has provably ended: it ran where this
 * process sees the same process ids, and no process has that id now. A
 * process that cannot be signalled (EPERM) exists; a reused id looks alive,
 * and then the lease's expiry decides, as it does elsewhere.
 */
function holderGone (lease: LeaseRow): boolean {
  if (lease.pid === null || lease.pid === process.pid || PID_SPACE === undefined || lease.pidSpace !== PID_SPACE) return false
  try {
    process.kill(lease.pid, 0)
    return false
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH'
  }
}

/** SQLITE_BUSY and its extended codes (SQLITE_BUSY_SNAPSHOT, …): another connection holds a lock. */
function isBusy (err: unknown): boolean {
  const code = (err as { code?: unknown }).code
  return typeof code === 'string' && code.startsWith('SQLITE_BUSY')
}

function messageOf (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
