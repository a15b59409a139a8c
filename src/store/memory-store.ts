import { StoreClosedError } from '../errors.ts'
import {
  checkRendered, compareRecords, emptyCounters, isExpired, mergeDelta
} from '../meter/index.ts'
import type {
  ExpireResult, FlushResult, OutboxEntry, OutboxStats, SealRequest, SealResult, StoreCounters,
  UsageDelta, UsagePolicy, UsageRecord, UsageStore, UsageSummary
} from '../meter/index.ts'

/**
 * `memory:` — the whole ledger in this process. For tests and for embedding
 * the metering library where losing usage on a crash is acceptable. Every
 * operation is synchronous underneath, so each one is trivially atomic.
 */
export class MemoryStore implements UsageStore {
  readonly kind = 'memory'
  /** Nothing outlives the process. */
  readonly durability = Object.freeze({ durable: false, code: 'memory' })
  readonly policy: UsagePolicy
  #records = new Map<string, UsageRecord>()
  #outbox: OutboxEntry[] = []
  #counters: StoreCounters = emptyCounters()
  #nextSealAt: number | undefined
  #seq = 0
  #closed = false

  constructor (policy: UsagePolicy) {
    this.policy = Object.freeze({ ...policy })
  }

  async flush (deltas: readonly UsageDelta[]): Promise<FlushResult> {
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
    return result
  }

  async expire (now: number): Promise<ExpireResult> {
    this.#check()
    const result: ExpireResult = { discarded: [] }
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
    if (this.#nextSealAt === undefined && request.force !== true) {
      this.#nextSealAt = now + intervalMs
      return { sealed: false, reports: [], nextSealAt: this.#nextSealAt }
    }
    if (request.force !== true && this.#nextSealAt !== undefined && now < this.#nextSealAt) {
      return { sealed: false, reports: [], nextSealAt: this.#nextSealAt }
    }
    const qualified = [...this.#records.values()].filter((r) => r.qualified).sort(compareRecords)
    // Render before touching state: a throwing render leaves the window unsealed.
    const rendered = qualified.length > 0 ? checkRendered(qualified, request.render(qualified, now)) : []
    for (const r of rendered) {
      if (this.#outbox.some((e) => e.reportId === r.reportId)) throw new Error(`report id ${r.reportId} is already in the outbox`)
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
    const i = this.#outbox.findIndex((e) => e.reportId === reportId)
    if (i === -1) return false
    const [entry] = this.#outbox.splice(i, 1)
    this.#counters.total_reports_sent++
    this.#counters.total_bytes_reported += entry?.bytes ?? 0
    this.#counters.last_success_at = now
    return true
  }

  async outboxFail (reportId: string, error: string, now: number): Promise<void> {
    this.#check()
    const entry = this.#outbox.find((e) => e.reportId === reportId)
    if (entry === undefined) return
    entry.attempts++
    entry.lastError = error
    entry.lastAttemptAt = now
    this.#counters.reports_failed++
    this.#counters.last_error = error
    this.#counters.last_error_at = now
  }

  async outboxStats (): Promise<OutboxStats> {
    this.#check()
    let pendingBytes = 0
    for (const e of this.#outbox) pendingBytes += e.bytes
    return { pending: this.#outbox.length, pendingBytes, oldestCreatedAt: this.#outbox[0]?.createdAt }
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
    return this.#outbox.map((e) => ({ ...e }))
  }

  async close (): Promise<void> {
    this.#closed = true
  }

  #check (): void {
    if (this.#closed) throw new StoreClosedError()
  }
}

function copyRecord (r: UsageRecord): UsageRecord {
  return { ...r, fileTypes: { ...r.fileTypes }, ips: r.ips.slice(), sessions: r.sessions.slice() }
}
