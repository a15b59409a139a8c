import type { StoreCounters } from './types.ts'
import type { OutboxStats, UsageStore, UsageSummary } from './usage-store.ts'
import { emptyCounters } from './usage-store.ts'

/** The shared figures `status()` reads from the store. */
export interface StoreView {
  /** When the next seal is due, ms since the epoch; undefined before the first schedule. */
  nextSealAt: number | undefined
  counters: StoreCounters
  outbox: OutboxStats
  /** Current cycles, with the largest uids. */
  summary: UsageSummary
}

/**
 * Reads the store's shared figures for `status()`. While the store is down
 * (a Redis outage) this instance's own figures are still worth showing, so
 * it hands back the last view it could read (all zero before the first).
 */
export class StoreViewReader {
  readonly #store: UsageStore
  #last: StoreView | undefined

  constructor (store: UsageStore) {
    this.#store = store
  }

  /** The view with the `top` largest uids, and why the store could not be read (null when it could). */
  async read (top: number): Promise<{ view: StoreView, error: string | null }> {
    const store = this.#store
    try {
      const [nextSealAt, counters, outbox, summary] = await Promise.all([
        store.nextSealAt(), store.counters(), store.outboxStats(), store.summary(top)
      ])
      const view = { nextSealAt, counters, outbox, summary }
      this.#last = view
      return { view, error: null }
    } catch (err) {
      const view = this.#last ?? {
        nextSealAt: undefined,
        counters: emptyCounters(),
        outbox: { pending: 0, pendingBytes: 0, oldestCreatedAt: undefined, parked: 0, parkedBytes: 0 },
        summary: { qualifiedUids: 0, pendingUids: 0, qualifiedBytes: 0, pendingBytes: 0, top: [] }
      }
      return { view, error: err instanceof Error ? err.message : String(err) }
    }
  }
}
