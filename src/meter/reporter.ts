import { nextAttemptDelayMs } from './backoff.ts'
import { randomIds } from './clock.ts'
import type { Clock, IdSource } from './clock.ts'
import { channels } from './diagnostics.ts'
import type { MeterLogger } from './logger.ts'
import { METER_DEFAULTS } from './options.ts'
import { ReportNetworkError } from '../errors.ts'
import { splitReport } from './report-split.ts'
import type { DeliveryOutcome, ReportTransport } from './report-transport.ts'
import type { OutboxEntry, RenderedReport } from './types.ts'
import type { UsageStore } from './usage-store.ts'

/** Settings of a {@link Reporter}. */
export interface ReporterOptions {
  store: UsageStore
  transport: ReportTransport
  clock: Clock
  logger: MeterLogger
  /** Seconds; first retry delay. */
  retryBase: number
  /** Seconds; longest retry delay, also for a `Retry-After` that asks for more. */
  retryCap: number
  /** Refusals (a lasting 4xx) after which a report is parked. @default 5 (`TRAFFIC_REPORT_MAX_REJECTIONS`) */
  maxRejections?: number | undefined
  /** Ids of the halves of a report split after a 413. @default crypto.randomUUID */
  newId?: IdSource | undefined
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

/**
 * What one attempt led to: the report delivered; the outbox moved on without
 * it (split in two after a 413, or parked); or a failure to retry after `delayMs`.
 */
type AttemptResult =
  | { kind: 'delivered' }
  | { kind: 'split' | 'parked' }
  | { kind: 'failed', delayMs: number }

/**
 * Statuses that say the receiver will not take this report, whatever the
 * number of tries (docs/report-format.md, "Refused reports"): every 4xx
 * except 408 (timeout), 409 (already have it: a success), 425 (too early)
 * and 429 (too many requests), which say "later". 413 (too large) is one
 * too, once the report cannot be split.
 */
export function isLastingRefusal (status: number | undefined): boolean {
  return status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 409 && status !== 425 && status !== 429
}

type ReporterState = 'idle' | 'running' | 'stopping' | 'stopped'

interface Waiter {
  done: () => void
  wakeOnNotify: boolean
}

/**
 * Delivers the outbox: oldest report first, one at a time, the same body on
 * every attempt, retrying failures forever with backoff (docs/metering.md,
 * "Delivery"). Runs beside the hot path and never blocks it: `record()`
 * only touches memory.
 *
 * A report the endpoint refuses for good does not hold up the rest: a 413
 * splits it in two (down to one uid), and after `maxRejections` lasting
 * refusals it is parked (kept in the store, out of the delivery order) and
 * the next report goes out.
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
      const result = await this.#exclusive(() => this.#attempt(entry, signal))
      if (result.kind === 'failed') {
        run.failed = true
        break
      }
      if (result.kind === 'delivered') run.delivered++
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
        // SM_ERR_STORE_NOT_DURABLE: the head is there, but the store cannot
        // yet confirm that its seal would survive a store restart
        // (docs/scaling.md, "Redis settings").
        const waiting = (err as { code?: unknown }).code === 'SM_ERR_STORE_NOT_DURABLE'
        this.#o.logger.warn({ err }, waiting
          ? 'report held back until the store confirms its seal is durable; will retry'
          : 'report outbox unreadable; will retry')
        await this.#pause(this.#o.pollMs, false)
        continue
      }
      if (this.#state !== 'running') break
      if (entry === undefined) {
        await this.#pause(this.#o.pollMs, true)
        continue
      }
      const current = entry
      const result = await this.#exclusive(() => this.#attempt(current, this.#abort.signal))
      if (result.kind === 'failed' && this.#state === 'running') await this.#pause(result.delayMs, false)
    }
  }

  async #attempt (entry: OutboxEntry, signal: AbortSignal | undefined): Promise<AttemptResult> {
    const { transport, clock } = this.#o
    this.attempts++
    let outcome: DeliveryOutcome
    try {
      outcome = await transport.send(entry, clock.now(), signal)
    } catch (err) {
      outcome = { ok: false, error: new ReportNetworkError('transport failed', { cause: err }) }
    }
    let result: AttemptResult
    try {
      result = await this.#record(entry, outcome)
    } catch (err) {
      // The store could not record the outcome. A delivered report stays in the
      // outbox and is sent again with the same Idempotency-Key; nothing is lost.
      this.#o.logger.error({ err, reportId: entry.reportId }, 'could not record delivery outcome')
      result = outcome.ok ? { kind: 'delivered' } : { kind: 'failed', delayMs: this.#delay(entry, outcome) }
    }
    if (channels.delivery.hasSubscribers) {
      channels.delivery.publish({
        reportId: entry.reportId,
        ok: outcome.ok,
        status: outcome.status,
        error: outcome.ok ? undefined : outcome.error.code,
        attempts: entry.attempts + 1,
        result: result.kind,
        retryInMs: result.kind === 'failed' ? result.delayMs : undefined
      })
    }
    return result
  }

  /** Store what an attempt led to: ack, split (413), park (refused too often) or a failure to retry. */
  async #record (entry: OutboxEntry, outcome: DeliveryOutcome): Promise<AttemptResult> {
    const { store, clock, logger } = this.#o
    const at = { reportId: entry.reportId, uids: entry.uids, bytes: entry.bytes }
    if (outcome.ok) {
      await store.outboxAck(entry.reportId, clock.now())
      this.delivered++
      logger.info({ ...at, status: outcome.status }, 'report delivered')
      return { kind: 'delivered' }
    }
    const { status, error } = outcome
    const parts = status === 413 ? this.#splittable(entry) : undefined
    if (parts !== undefined) {
      // False: the report left the outbox meanwhile (acknowledged by a delivery in flight, dropped).
      if (await store.outboxSplit(entry.reportId, parts, error.message, clock.now(), { status })) {
        logger.warn({ ...at, status, parts: parts.map((p) => ({ reportId: p.reportId, uids: p.uids, bytes: p.bytes })) },
          'report refused as too large (HTTP 413): split in two, sent next')
      }
      return { kind: 'split' }
    }
    if (isLastingRefusal(status)) {
      const rejections = (entry.rejections ?? 0) + 1
      const maxRejections = this.#o.maxRejections ?? METER_DEFAULTS.reportMaxRejections
      if (rejections >= maxRejections) {
        if (await store.outboxPark(entry.reportId, error.message, clock.now(), { status })) {
          logger.error({ ...at, status, rejections },
            `report parked: the endpoint refused it ${rejections} times (HTTP ${String(status)}); delivery moves on (streammeter outbox list / retry)`)
        }
        return { kind: 'parked' }
      }
      await store.outboxFail(entry.reportId, error.message, clock.now(), { status, rejected: true })
      const delayMs = this.#delay(entry, outcome)
      logger.warn({ ...at, status, rejections, maxRejections, retryInMs: delayMs }, 'report refused; will retry, then park it')
      return { kind: 'failed', delayMs }
    }
    await store.outboxFail(entry.reportId, error.message, clock.now(), { status })
    const delayMs = this.#delay(entry, outcome)
    logger.warn({ ...at, attempts: entry.attempts + 1, status, code: error.code, error: error.message, retryInMs: delayMs }, 'report delivery failed; will retry')
    return { kind: 'failed', delayMs }
  }

  /** The halves of a report a 413 refused, or undefined when it cannot be split (one uid, or not a report body). */
  #splittable (entry: OutboxEntry): RenderedReport[] | undefined {
    return entry.uids > 1 ? splitReport(entry, this.#o.newId ?? randomIds) : undefined
  }

  /** Backoff after this failure, or what `Retry-After` asked for (capped). */
  #delay (entry: OutboxEntry, outcome: DeliveryOutcome): number {
    const retryAfter = outcome.ok ? undefined : outcome.retryAfterMs
    return nextAttemptDelayMs(entry.attempts + 1, this.#o.retryBase, this.#o.retryCap, retryAfter, this.#o.random)
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
