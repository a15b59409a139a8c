import { StoreClosedError } from '../errors.ts'
import { MemoryAccess } from './access-memory.ts'
import {
  checkRendered, compareRecords, emptyCounters, isExpired, mergeDelta, sealDecision
} from '../meter/index.ts'
import type {
  ExpireResult, FlushResult, OutboxEntry, OutboxStats, SealRequest, SealResult, StoreCounters,
  UsageDelta, UsagePolicy, UsageRecord, UsageStore, UsageSummary
} from '../meter/index.ts'
import { checkSplit, outboxItem } from '../meter/index.ts'
import type { CommittedLogCursor, FailureDetail, LogCursor, OutboxItem, RenderedReport } from '../meter/index.ts'

/**
 * `memory:` — the whole ledger in this process. For tests and for embedding
 * the metering library where losing usage on a crash is acceptable. Every
 * operation is synchronous underneath, so each one is trivially atomic.
 */
export class MemoryStore implements UsageStore {
  readonly kind = 'memory'
  /** Grants, sessions and use counts (docs/access.md). */
  readonly access = new MemoryAccess(() => this.#check())
  /** Nothing outlives the process. */
  readonly durability = Object.freeze({ durable: false, code: 'memory' })
  readonly policy: UsagePolicy
  #records = new Map<string, UsageRecord>()
  /** Pending reports in delivery order. */
  #outbox: OutboxEntry[] = []
  /** Parked reports by seq. */
  #parked: OutboxEntry[] = []
  #counters: StoreCounters = emptyCounters()
  #nextSealAt: number | undefined
  /** When #nextSealAt was set (see sealDecision). */
  #scheduledAt: number | undefined
  #seq = 0
  #closed = false
  readonly #cursors = new Map<string, number>()

  constructor (policy: UsagePolicy) {
    this.policy = Object.freeze({ ...policy })
  }

  async flush (deltas: readonly UsageDelta[], _batchId?: string, cursor?: LogCursor): Promise<FlushResult> {
    this.#check()
    const result: FlushResult = { uids: deltas.length, created: 0, qualified: 0, discarded: [] }
    for (const delta of deltas) {
      const before = this.#records.get(delta.uid)
      const outcome = mergeDelta(before, delta, this.policy)
      if (outcome.discarded !== undefined) {
        result.discarded.push(outcome.discarded)
        this.#counters.accumulator_cleanups++
        this.#counters.bytes_discarded += outcome.discarded.bytes
      }
      if (outcome.created) {
        result.created++
        this.#counters.total_recorded_uids++
      }
      if (outcome.record.qualified && (outcome.created || before?.qualified !== true)) result.qualified++
      this.#records.set(delta.uid, outcome.record)
    }
    // Nothing above can fail part-way: the deltas and the cursor go in together.
    if (cursor !== undefined) this.#cursors.set(cursor.key, cursor.position)
    return result
  }

  async logCursor (key: string): Promise<CommittedLogCursor> {
    this.#check()
    return { position: this.#cursors.get(key) ?? 0 }
  }

  async expire (now: number): Promise<ExpireResult> {
    this.#check()
    const result: ExpireResult = { discarded: [] }
    this.access.sweep(now)
    for (const [uid, record] of this.#records) {
      if (!isExpired(record, now, this.policy)) continue
      this.#records.delete(uid)
      result.discarded.push({ uid, bytes: record.bytes, startTime: record.startTime })
      this.#counters.accumulator_cleanups++
      this.#counters.bytes_discarded += record.bytes
    }
    return result
  }

  async seal (request: SealRequest): Promise<SealResult> {
    this.#check()
    const { now, intervalMs } = request
    const decision = sealDecision({ nextSealAt: this.#nextSealAt, scheduledAt: this.#scheduledAt }, now, request.force === true)
    if (decision === 'schedule') {
      this.#nextSealAt = now + intervalMs
      this.#scheduledAt = now
      return { sealed: false, reports: [], nextSealAt: this.#nextSealAt }
    }
    if (decision === 'wait') return { sealed: false, reports: [], nextSealAt: this.#nextSealAt as number }
    const qualified = [...this.#records.values()].filter((r) => r.qualified).sort(compareRecords)
    // Render before touching state: a throwing render leaves the window unsealed.
    const rendered = qualified.length > 0 ? checkRendered(qualified, request.render(qualified, now)) : []
    for (const r of rendered) {
      if (this.#find(r.reportId) !== undefined) throw new Error(`report id ${r.reportId} is already in the outbox`)
    }
    const reports: OutboxEntry[] = rendered.map((r) => ({
      seq: ++this.#seq,
      reportId: r.reportId,
      createdAt: now,
      body: r.body,
      uids: r.uids,
      bytes: r.bytes,
      attempts: 0
    }))
    for (const record of qualified) this.#records.delete(record.uid)
    this.#outbox.push(...reports)
    this.#counters.reports_created += reports.length
    if (reports.length > 0) this.#counters.windows_sealed++
    this.#nextSealAt = now + intervalMs
    this.#scheduledAt = now
    return { sealed: true, reports: reports.map((r) => ({ ...r })), nextSealAt: this.#nextSealAt }
  }

  async nextSealAt (): Promise<number | undefined> {
    this.#check()
    return this.#nextSealAt
  }

  async outboxHead (): Promise<OutboxEntry | undefined> {
    this.#check()
    const head = this.#outbox[0]
    return head === undefined ? undefined : { ...head }
  }

  async outboxAck (reportId: string, now: number): Promise<boolean> {
    this.#check()
    const found = this.#find(reportId)
    if (found === undefined) return false
    const [entry] = found.list.splice(found.index, 1)
    this.#counters.total_reports_sent++
    this.#counters.total_bytes_reported += entry?.bytes ?? 0
    this.#counters.last_success_at = now
    return true
  }

  async outboxFail (reportId: string, error: string, now: number, detail: FailureDetail = {}): Promise<void> {
    this.#check()
    const found = this.#find(reportId)
    if (found !== undefined) this.#failed(found.entry, error, now, detail)
  }

  async outboxPark (reportId: string, error: string, now: number, detail: FailureDetail = {}): Promise<boolean> {
    this.#check()
    const i = this.#outbox.findIndex((e) => e.reportId === reportId)
    const entry = this.#outbox[i]
    if (entry === undefined) return false
    this.#failed(entry, error, now, { ...detail, rejected: true })
    entry.parkedAt = now
    this.#outbox.splice(i, 1)
    this.#parked.push(entry)
    this.#parked.sort((a, b) => a.seq - b.seq)
    this.#counters.reports_parked++
    return true
  }

  async outboxSplit (reportId: string, parts: readonly RenderedReport[], error: string, now: number, detail: FailureDetail = {}): Promise<boolean> {
    this.#check()
    const i = this.#outbox.findIndex((e) => e.reportId === reportId)
    const entry = this.#outbox[i]
    if (entry === undefined) return false
    checkSplit(entry, parts)
    for (const p of parts) {
      if (this.#find(p.reportId) !== undefined) throw new Error(`report id ${p.reportId} is already in the outbox`)
    }
    this.#failed(entry, error, now, detail)
    const replacing = parts.map((p): OutboxEntry => ({
      seq: ++this.#seq, reportId: p.reportId, createdAt: entry.createdAt, body: p.body, uids: p.uids, bytes: p.bytes, attempts: 0
    }))
    this.#outbox.splice(i, 1, ...replacing)
    this.#counters.reports_created += replacing.length
    this.#counters.reports_split++
    return true
  }

  async outboxRetry (target: string | { all: true }): Promise<string[]> {
    this.#check()
    const back = typeof target === 'string' ? this.#parked.filter((e) => e.reportId === target) : this.#parked
    this.#parked = this.#parked.filter((e) => !back.includes(e))
    for (const entry of back) {
      delete entry.parkedAt
      delete entry.rejections
    }
    this.#outbox.unshift(...back)
    return back.map((e) => e.reportId)
  }

  async outboxDrop (reportId: string, options: { force?: boolean | undefined } = {}): Promise<OutboxItem | 'not-parked' | 'unknown'> {
    this.#check()
    const found = this.#find(reportId)
    if (found === undefined) return 'unknown'
    if (found.list === this.#outbox && options.force !== true) return 'not-parked'
    found.list.splice(found.index, 1)
    this.#counters.reports_dropped++
    this.#counters.reports_dropped_bytes += found.entry.bytes
    return outboxItem(found.entry)
  }

  async outboxStats (): Promise<OutboxStats> {
    this.#check()
    return {
      pending: this.#outbox.length,
      pendingBytes: sumBytes(this.#outbox),
      oldestCreatedAt: oldest(this.#outbox),
      parked: this.#parked.length,
      parkedBytes: sumBytes(this.#parked)
    }
  }

  async outboxList (): Promise<OutboxItem[]> {
    this.#check()
    return [...this.#outbox, ...this.#parked].map(outboxItem)
  }

  async counters (): Promise<StoreCounters> {
    this.#check()
    return { ...this.#counters }
  }

  async summary (top: number): Promise<UsageSummary> {
    this.#check()
    const summary: UsageSummary = { qualifiedUids: 0, pendingUids: 0, qualifiedBytes: 0, pendingBytes: 0, top: [] }
    for (const r of this.#records.values()) {
      if (r.qualified) {
        summary.qualifiedUids++
        summary.qualifiedBytes += r.bytes
      } else {
        summary.pendingUids++
        summary.pendingBytes += r.bytes
      }
    }
    summary.top = [...this.#records.values()].sort(compareRecords).slice(0, top).map(copyRecord)
    return summary
  }

  async records (): Promise<UsageRecord[]> {
    this.#check()
    return [...this.#records.values()].map(copyRecord)
  }

  async outbox (): Promise<OutboxEntry[]> {
    this.#check()
    return [...this.#outbox, ...this.#parked].map((e) => ({ ...e }))
  }

  async close (): Promise<void> {
    this.#closed = true
  }

  #check (): void {
    if (this.#closed) throw new StoreClosedError()
  }

  /** A report, pending or parked, with the list that holds it. */
  #find (reportId: string): { entry: OutboxEntry, list: OutboxEntry[], index: number } | undefined {
    for (const list of [this.#outbox, this.#parked]) {
      const index = list.findIndex((e) => e.reportId === reportId)
      const entry = list[index]
      if (entry !== undefined) return { entry, list, index }
    }
    return undefined
  }

  #failed (entry: OutboxEntry, error: string, now: number, detail: FailureDetail): void {
    entry.attempts++
    entry.lastError = error
    entry.lastAttemptAt = now
    if (detail.status === undefined) delete entry.lastStatus
    else entry.lastStatus = detail.status
    if (detail.rejected === true) entry.rejections = (entry.rejections ?? 0) + 1
    this.#counters.reports_failed++
    this.#counters.last_error = error
    this.#counters.last_error_at = now
  }
}

/** The earliest creation time (a report put back at the head may be older than the first). */
function oldest (entries: readonly OutboxEntry[]): number | undefined {
  let min: number | undefined
  for (const e of entries) if (min === undefined || e.createdAt < min) min = e.createdAt
  return min
}

function sumBytes (entries: readonly OutboxEntry[]): number {
  let bytes = 0
  for (const e of entries) bytes += e.bytes
  return bytes
}

function copyRecord (r: UsageRecord): UsageRecord {
  return { ...r, fileTypes: { ...r.fileTypes }, ips: r.ips.slice(), sessions: r.sessions.slice() }
}
