import type { Histogram } from 'prom-client'
import type {
  CommittedLogCursor, ExpireResult, FailureDetail, FlushResult, LogCursor, OutboxEntry, OutboxItem, OutboxStats, RenderedReport, SealRequest, SealResult, StoreCounters,
  StoreDurability, UsageDelta, UsagePolicy, UsageRecord, UsageStore, UsageSummary
} from '../../meter/index.ts'

/**
 * A {@link UsageStore} that times every operation into a histogram (store
 * latency on `/metrics`).
 */
export class InstrumentedStore implements UsageStore {
  readonly #inner: UsageStore
  readonly #latency: Histogram<'operation'>

  constructor (inner: UsageStore, latency: Histogram<'operation'>) {
    this.#inner = inner
    this.#latency = latency
  }

  get kind (): string { return this.#inner.kind }
  get policy (): UsagePolicy { return this.#inner.policy }
  get durability (): StoreDurability | undefined { return this.#inner.durability }

  flush (deltas: readonly UsageDelta[], batchId?: string, cursor?: LogCursor): Promise<FlushResult> {
    return this.#time('flush', () => this.#inner.flush(deltas, batchId, cursor))
  }

  logCursor (key: string): Promise<CommittedLogCursor> { return this.#time('log_cursor', () => this.#inner.logCursor(key)) }
  expire (now: number): Promise<ExpireResult> { return this.#time('expire', () => this.#inner.expire(now)) }
  seal (request: SealRequest): Promise<SealResult> { return this.#time('seal', () => this.#inner.seal(request)) }
  nextSealAt (): Promise<number | undefined> { return this.#time('next_seal_at', () => this.#inner.nextSealAt()) }
  outboxHead (): Promise<OutboxEntry | undefined> { return this.#time('outbox_head', () => this.#inner.outboxHead()) }
  outboxAck (reportId: string, now: number): Promise<boolean> { return this.#time('outbox_ack', () => this.#inner.outboxAck(reportId, now)) }
  outboxFail (reportId: string, error: string, now: number, detail?: FailureDetail): Promise<void> {
    return this.#time('outbox_fail', () => this.#inner.outboxFail(reportId, error, now, detail))
  }

  outboxPark (reportId: string, error: string, now: number, detail?: FailureDetail): Promise<boolean> {
    return this.#time('outbox_park', () => this.#inner.outboxPark(reportId, error, now, detail))
  }

  outboxSplit (reportId: string, parts: readonly RenderedReport[], error: string, now: number, detail?: FailureDetail): Promise<boolean> {
    return this.#time('outbox_split', () => this.#inner.outboxSplit(reportId, parts, error, now, detail))
  }

  outboxRetry (target: string | { all: true }): Promise<string[]> { return this.#time('outbox_retry', () => this.#inner.outboxRetry(target)) }
  outboxDrop (reportId: string, options?: { force?: boolean | undefined }): Promise<OutboxItem | 'not-parked' | 'unknown'> {
    return this.#time('outbox_drop', () => this.#inner.outboxDrop(reportId, options))
  }

  outboxStats (): Promise<OutboxStats> { return this.#time('outbox_stats', () => this.#inner.outboxStats()) }
  outboxList (): Promise<OutboxItem[]> { return this.#time('outbox_list', () => this.#inner.outboxList()) }
  counters (): Promise<StoreCounters> { return this.#time('counters', () => this.#inner.counters()) }
  summary (top: number): Promise<UsageSummary> { return this.#time('summary', () => this.#inner.summary(top)) }
  records (): Promise<UsageRecord[]> { return this.#inner.records() }
  outbox (): Promise<OutboxEntry[]> { return this.#inner.outbox() }
  /** The inner store's lease; a store without one always leads. */
  leadership (holder: string, ttlMs: number): Promise<number> {
    const inner = this.#inner
    return inner.leadership === undefined ? Promise.resolve(1) : this.#time('leadership', () => inner.leadership!(holder, ttlMs))
  }

  releaseLeadership (holder: string): Promise<void> {
    return this.#inner.releaseLeadership?.(holder) ?? Promise.resolve()
  }

  close (): Promise<void> { return this.#inner.close() }

  async #time<T> (operation: string, fn: () => Promise<T>): Promise<T> {
    const end = this.#latency.startTimer({ operation })
    try {
      return await fn()
    } finally {
      end()
    }
  }
}
