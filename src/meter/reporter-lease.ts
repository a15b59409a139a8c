import type { MeterLogger } from './logger.ts'
import type { UsageStore } from './usage-store.ts'

/**
 * This collector's hold on the store's reporter lease: with a shared store
 * one reporter at a time seals and delivers (docs/architecture.md, "One
 * reporter at a time"). A store without a lease (memory, one process) makes
 * every collector the reporter.
 *
 * The lease is renewed on every tick; it expires after `ttlMs` without a
 * renewal, so a reporter that died is replaced within that time, and one
 * that stops releases it at once.
 */
export class ReporterLease {
  readonly #store: UsageStore
  /** Unique per collector: two processes with one worker id never share a lease. */
  readonly #holder: string
  readonly #ttlMs: number
  readonly #logger: MeterLogger
  #held: boolean
  /** True from a failed renewal until the next answer (one warning per outage). */
  #failing = false

  constructor (store: UsageStore, holder: string, ttlMs: number, logger: MeterLogger) {
    this.#store = store
    this.#holder = holder
    this.#ttlMs = ttlMs
    this.#logger = logger
    this.#held = store.leadership === undefined
  }

  /** True while this collector is the reporter. */
  get held (): boolean {
    return this.#held
  }

  /** Take or renew the lease; true while held. A store that cannot answer means not held. */
  async hold (): Promise<boolean> {
    const store = this.#store
    if (store.leadership === undefined) return true
    let fence = 0
    try {
      fence = await store.leadership(this.#holder, this.#ttlMs)
      this.#failing = false
    } catch (err) {
      if (!this.#failing) this.#logger.warn({ err }, 'reporter lease unavailable')
      this.#failing = true
    }
    const held = fence > 0
    if (held !== this.#held) this.#logger.info({ holder: this.#holder, fence }, held ? 'became the reporter' : 'stopped being the reporter')
    this.#held = held
    return held
  }

  /** Hand the lease over at once rather than after its TTL (at close). */
  async release (): Promise<void> {
    if (!this.#held || this.#store.releaseLeadership === undefined) return
    await this.#store.releaseLeadership(this.#holder).catch((err: unknown) => this.#logger.warn({ err }, 'could not release the reporter lease'))
    this.#held = false
  }
}
