import { retryDelayMs } from './backoff.ts'
import type { Clock } from './clock.ts'
import { channels } from './diagnostics.ts'
import type { MeterLogger } from './logger.ts'
import { ReportNetworkError } from '../errors.ts'
import type { DeliveryOutcome, ReportTransport } from './report-transport.ts'
import type { OutboxEntry } from './types.ts'
import type { UsageStore } from './usage-store.ts'

/** Settings of a {@link Reporter}. */
export interface ReporterOptions {
  store: UsageStore
  transport: ReportTransport
  clock: Clock
  logger: MeterLogger
  /** Seconds; first retry delay. */
  retryBase: number
  /** Seconds; longest retry delay. */
  retryCap: number
  /** Milliseconds between looks at an empty outbox (a seal wakes it sooner). */
  pollMs: number
  /** Jitter source. @default Math.random */
  random?: (() => number) | undefined
  /** False while another instance holds the reporter lease: the loop waits. @default always true */
  canDeliver?: (() => boolean) | undefined
}

/** What one {@link Reporter.deliverPending} pass did. */
export interface DeliveryRun {
  delivered: number
  /** True when it stopped on a failed attempt (the report stays first in the outbox). */
  failed: boolean
}

type ReporterState = 'idle' | 'running' | 'stopping' | 'stopped'

interface Waiter {
  done: () => void
  wakeOnNotify: boolean
}

/**
 * Delivers the outbox: oldest report first, one at a time, the same body on
 * every attempt, retrying failures forever with backoff (DESIGN §3). Runs
 * beside the hot path and never blocks it: `record()` only touches memory.
 */
export class Reporter {
  readonly #o: ReporterOptions
  #state: ReporterState = 'idle'
  #loop: Promise<void> | undefined
  #abort = new AbortController()
  #waiters = new Set<Waiter>()
  #lock: Promise<unknown> = Promise.resolve()
  attempts = 0
  delivered = 0

  constructor (options: ReporterOptions) {
    this.#o = options
  }

  /** Start the background delivery loop. */
  start (): void {
    if (this.#state !== 'idle') return
    this.#setState('running')
    this.#loop = this.#run()
  }

  /** New reports are in the outbox: wake the loop if it is idle (not if it is backing off). */
  notify (): void {
    for (const w of this.#waiters) if (w.wakeOnNotify) w.done()
  }

  /**
   * Try each pending report once, in order, stopping at the first failure or
   * when `signal` aborts. Used by graceful shutdown and by tests that drive
   * delivery by hand. Serialised with the background loop: never two sends at once.
   */
  async deliverPending (signal?: AbortSignal): Promise<DeliveryRun> {
    const run: DeliveryRun = { delivered: 0, failed: false }
    const tried = new Set<string>()
    while (signal?.aborted !== true) {
      const entry = await this.#o.store.outboxHead()
      if (entry === undefined || tried.has(entry.reportId)) break
      tried.add(entry.reportId)
      const ok = await this.#exclusive(() => this.#attempt(entry, signal))
      if (!ok) {
        run.failed = true
        break
      }
      run.delivered++
    }
    return run
  }

  /**
   * Stop the loop. An attempt in flight may finish until `deadline` (ms since
   * the epoch, on the wall clock); then it is aborted and counted as failed.
   */
  async stop (deadline: number): Promise<void> {
    if (this.#state === 'idle') this.#setState('stopped')
    if (this.#state !== 'running') return
    this.#setState('stopping')
    for (const w of this.#waiters) w.done()
    const loop = this.#loop ?? Promise.resolve()
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.#abort.abort()
        resolve()
      }, Math.max(0, deadline - Date.now()))
    })
    await Promise.race([loop, late])
    clearTimeout(timer)
    await loop
    this.#setState('stopped')
  }

  #setState (state: ReporterState): void {
    this.#state = state
  }

  async #run (): Promise<void> {
    while (this.#state === 'running') {
      if (this.#o.canDeliver?.() === false) {
        await this.#pause(this.#o.pollMs, true)
        continue
      }
      let entry: OutboxEntry | undefined
      try {
        entry = await this.#o.store.outboxHead()
      } catch (err) {
        this.#o.logger.warn({ err }, 'report outbox unreadable; will retry')
        await this.#pause(this.#o.pollMs, false)
        continue
      }
      if (this.#state !== 'running') break
      if (entry === undefined) {
        await this.#pause(this.#o.pollMs, true)
        continue
      }
      const current = entry
      const ok = await this.#exclusive(() => this.#attempt(current, this.#abort.signal))
      if (!ok && this.#state === 'running') {
        await this.#pause(retryDelayMs(current.attempts + 1, this.#o.retryBase, this.#o.retryCap, this.#o.random), false)
      }
    }
  }

  async #attempt (entry: OutboxEntry, signal: AbortSignal | undefined): Promise<boolean> {
    const { store, transport, clock, logger } = this.#o
    this.attempts++
    let outcome: DeliveryOutcome
    try {
      outcome = await transport.send(entry, clock.now(), signal)
    } catch (err) {
      outcome = { ok: false, error: new ReportNetworkError('transport failed', { cause: err }) }
    }
    try {
      if (outcome.ok) {
        await store.outboxAck(entry.reportId, clock.now())
        this.delivered++
        logger.info({ reportId: entry.reportId, uids: entry.uids, bytes: entry.bytes, status: outcome.status }, 'report delivered')
      } else {
        await store.outboxFail(entry.reportId, outcome.error.message, clock.now())
        logger.warn({ reportId: entry.reportId, attempts: entry.attempts + 1, code: outcome.error.code, error: outcome.error.message }, 'report delivery failed; will retry')
      }
    } catch (err) {
      // The store could not record the outcome. A delivered report stays in the
      // outbox and is sent again with the same Idempotency-Key; nothing is lost.
      logger.error({ err, reportId: entry.reportId }, 'could not record delivery outcome')
    }
    if (channels.delivery.hasSubscribers) {
      channels.delivery.publish({
        reportId: entry.reportId,
        ok: outcome.ok,
        status: outcome.status,
        error: outcome.ok ? undefined : outcome.error.code,
        attempts: entry.attempts + 1
      })
    }
    return outcome.ok
  }

  #exclusive<T> (fn: () => Promise<T>): Promise<T> {
    const next = this.#lock.then(fn, fn)
    this.#lock = next.catch(() => {})
    return next
  }

  #pause (ms: number, wakeOnNotify: boolean): Promise<void> {
    return new Promise((resolve) => {
      const waiter: Waiter = {
        wakeOnNotify,
        done: () => {
          clearTimeout(timer)
          this.#waiters.delete(waiter)
          resolve()
        }
      }
      const timer = setTimeout(waiter.done, ms)
      timer.unref()
      this.#waiters.add(waiter)
    })
  }
}
