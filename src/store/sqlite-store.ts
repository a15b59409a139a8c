import { mkdirSync, readlinkSync } from 'node:fs'
import { hostname } from 'node:os'
import { dirname, resolve } from 'node:path'
import Database from 'better-sqlite3'
import { StoreClosedError, StoreError, StreammeterError } from '../errors.ts'
import {
  checkRendered, compareRecords, emptyCounters, isExpired, mergeDelta, systemClock
} from '../meter/index.ts'
import type {
  Clock, ExpireResult, FlushResult, OutboxEntry, OutboxStats, RenderedReport, SealRequest, SealResult,
  StoreCounters, UsageDelta, UsagePolicy, UsageRecord, UsageStore, UsageSummary
} from '../meter/index.ts'
import { LEASE_KEY, migrate, parseLease, toEntry, toRecord, toRow } from './sqlite-schema.ts'
import type { LeaseRow, OutboxRow, UsageRow } from './sqlite-schema.ts'

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
  readonly #countRecords
  readonly #topCutoff
  readonly #recordsFrom
  readonly #insertOutbox
  readonly #outboxHead
  readonly #outboxAll
  readonly #deleteOutbox
  readonly #failOutbox
  readonly #outboxStats
  readonly #getMeta
  readonly #setMeta
  readonly #addMeta
  readonly #allMeta

  readonly #flushTx
  readonly #expireTx
  readonly #sealTx
  readonly #ackTx
  readonly #failTx
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
      db.pragma('busy_timeout = 5000')
      db.pragma('journal_mode = WAL')
      // NORMAL in WAL mode: a commit survives a crash of this process (the
      // WAL is in the OS page cache) but only a power loss or OS crash can
      // roll back the last commits, and the file stays consistent. That is
      // the flush-interval durability DESIGN §2 promises, at a fraction of
      // FULL's fsync per flush. seal() is the exception, see there.
      db.pragma('synchronous = NORMAL')
      migrate(db)
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
    this.#countRecords = db.prepare<[], { qualified: number, n: number, bytes: number }>(
      'SELECT qualified, count(*) AS n, coalesce(sum(bytes), 0) AS bytes FROM usage GROUP BY qualified')
    this.#topCutoff = db.prepare<[number], number>(
      'SELECT bytes FROM usage ORDER BY bytes DESC LIMIT 1 OFFSET ?').pluck()
    this.#recordsFrom = db.prepare<[number], UsageRow>('SELECT * FROM usage WHERE bytes >= ? ORDER BY bytes DESC')
    this.#insertOutbox = db.prepare<[string, number, string, number, number]>(
      'INSERT INTO outbox (report_id, created_ms, body, uids, bytes) VALUES (?, ?, ?, ?, ?)')
    this.#outboxHead = db.prepare<[], OutboxRow>('SELECT * FROM outbox ORDER BY seq LIMIT 1')
    this.#outboxAll = db.prepare<[], OutboxRow>('SELECT * FROM outbox ORDER BY seq')
    this.#deleteOutbox = db.prepare<[string], number>('DELETE FROM outbox WHERE report_id = ? RETURNING bytes').pluck()
    this.#failOutbox = db.prepare<[string, number, string]>(
      'UPDATE outbox SET attempts = attempts + 1, last_error = ?, last_attempt_ms = ? WHERE report_id = ?')
    this.#outboxStats = db.prepare<[], { pending: number, pendingBytes: number, oldest: number | null }>(`
      SELECT count(*) AS pending, coalesce(sum(bytes), 0) AS pendingBytes,
        (SELECT created_ms FROM outbox ORDER BY seq LIMIT 1) AS oldest
      FROM outbox`)
    this.#getMeta = db.prepare<[string], unknown>('SELECT value FROM meta WHERE key = ?').pluck()
    this.#setMeta = db.prepare<[string, number | string]>(
      'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value')
    this.#addMeta = db.prepare<[number, string]>('UPDATE meta SET value = value + ? WHERE key = ?')
    this.#allMeta = db.prepare<[], { key: string, value: unknown }>('SELECT key, value FROM meta')

    // Writers take the write lock up front (BEGIN IMMEDIATE): a deferred
    // transaction that reads and then writes fails with SQLITE_BUSY_SNAPSHOT,
    // without waiting, when another process committed in between.
    this.#flushTx = db.transaction((deltas: readonly UsageDelta[]) => this.#flushIn(deltas)).immediate
    this.#expireTx = db.transaction((now: number) => this.#expireIn(now)).immediate
    this.#sealTx = db.transaction((request: SealRequest) => this.#sealIn(request)).immediate
    this.#ackTx = db.transaction((reportId: string, now: number) => this.#ackIn(reportId, now)).immediate
    this.#failTx = db.transaction((reportId: string, error: string, now: number) => this.#failIn(reportId, error, now)).immediate
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
    return this.#run('seal', () => {
      // A seal must not be rolled back by a power loss once its reports may
      // have been delivered: the records would come back and be reported
      // again under a new report_id. So this one commit syncs the WAL (FULL),
      // which also makes every earlier commit durable. Seals are rare.
      this.#db.pragma('synchronous = FULL')
      try {
        return this.#sealTx(request)
      } finally {
        this.#db.pragma('synchronous = NORMAL')
      }
    })
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
    this.#run('releaseLeadership', () => this.#releaseTx(holder))
  }

  async nextSealAt (): Promise<number | undefined> {
    return this.#run('nextSealAt', () => this.#nextSeal())
  }

  async outboxHead (): Promise<OutboxEntry | undefined> {
    return this.#run('outboxHead', () => {
      const row = this.#outboxHead.get()
      return row === undefined ? undefined : toEntry(row)
    })
  }

  async outboxAck (reportId: string, now: number): Promise<boolean> {
    return this.#run('outboxAck', () => this.#ackTx(reportId, now))
  }

  async outboxFail (reportId: string, error: string, now: number): Promise<void> {
    this.#run('outboxFail', () => this.#failTx(reportId, error, now))
  }

  async outboxStats (): Promise<OutboxStats> {
    return this.#run('outboxStats', () => {
      const row = this.#outboxStats.get()
      return { pending: row?.pending ?? 0, pendingBytes: row?.pendingBytes ?? 0, oldestCreatedAt: row?.oldest ?? undefined }
    })
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
    return this.#run('outbox', () => this.#outboxAll.all().map(toEntry))
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
    for (const delta of deltas) {
      // Read inside the loop: a batch may hold the same uid twice.
      const row = this.#getRecord.get(delta.uid)
      const before = row === undefined ? undefined : toRecord(row)
      const outcome = mergeDelta(before, delta, this.policy)
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
    return result
  }

  #expireIn (now: number): ExpireResult {
    const result: ExpireResult = { discarded: [] }
    // The index narrows the scan (with 1 ms to spare for float rounding);
    // isExpired decides, so the rule stays the shared one.
    for (const row of this.#expiryCandidates.all(now - this.policy.accumulatorTimeoutMs + 1)) {
      const record = toRecord(row)
      if (!isExpired(record, now, this.policy)) continue
      this.#deleteRecord.run(record.uid)
      result.discarded.push({ uid: record.uid, bytes: record.bytes, startTime: record.startTime })
      this.#add('accumulator_cleanups', 1)
      this.#add('bytes_discarded', record.bytes)
    }
    return result
  }

  #sealIn (request: SealRequest): SealResult {
    const { now, intervalMs } = request
    const force = request.force === true
    const scheduled = this.#nextSeal()
    if (scheduled === undefined && !force) {
      this.#setMeta.run('next_seal_at', now + intervalMs)
      return { sealed: false, reports: [], nextSealAt: now + intervalMs }
    }
    if (!force && scheduled !== undefined && now < scheduled) {
      return { sealed: false, reports: [], nextSealAt: scheduled }
    }
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
    this.#add('reports_created', reports.length)
    if (reports.length > 0) this.#add('windows_sealed', 1)
    this.#setMeta.run('next_seal_at', now + intervalMs)
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

  #failIn (reportId: string, error: string, now: number): void {
    if (this.#failOutbox.run(error, now, reportId).changes === 0) return
    this.#add('reports_failed', 1)
    this.#setMeta.run('last_error', error)
    this.#setMeta.run('last_error_at', now)
  }

  #summaryIn (top: number): UsageSummary {
    const summary: UsageSummary = { qualifiedUids: 0, pendingUids: 0, qualifiedBytes: 0, pendingBytes: 0, top: [] }
    for (const row of this.#countRecords.all()) {
      if (row.qualified === 1) {
        summary.qualifiedUids = row.n
        summary.qualifiedBytes = row.bytes
      } else {
        summary.pendingUids = row.n
        summary.pendingBytes = row.bytes
      }
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
    const value = this.#getMeta.get('next_seal_at')
    return value === undefined || value === null ? undefined : Number(value)
  }

  #add (counter: NumericCounter, n: number): void {
    if (n !== 0) this.#addMeta.run(n, counter)
  }

  /** Run one operation: closed check, and unexpected SQLite failures become StoreError. */
  #run<T> (operation: string, fn: () => T): T {
    if (this.#closed) throw new StoreClosedError()
    try {
      return fn()
    } catch (err) {
      if (err instanceof CallerError) throw err.error
      if (err instanceof StreammeterError) throw err
      throw new StoreError(`sqlite store ${operation} failed: ${messageOf(err)}`, { cause: err })
    }
  }
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

function messageOf (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
