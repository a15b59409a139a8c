import type { MeterLogger } from './logger.ts'

/** What a {@link FlushScheduler} runs. */
export interface FlushSchedulerOptions {
  /** Milliseconds from the end of one tick to the start of the next. */
  intervalMs: number
  /** One timer step (flush, expire, seal when due). Its failures are its own to log. */
  tick: () => Promise<void>
  /** The flush an early flush runs. */
  flush: () => Promise<unknown>
  /** False once the collector stops: no tick is scheduled after that. */
  running: () => boolean
  logger: MeterLogger
}

/**
 * When the collector flushes: a tick every interval, each scheduled when the
 * one before has settled (a slow store never gets two at once), and an
 * early flush on the next turn of the event loop when `record()` finds the
 * in-process map full. The timers are unref'd: they never keep the process
 * alive.
 */
export class FlushScheduler {
  readonly #o: FlushSchedulerOptions
  #timer: NodeJS.Timeout | undefined
  #earlyQueued = false

  constructor (options: FlushSchedulerOptions) {
    this.#o = options
  }

  /** Schedule the next tick, and after it the one after, while running. */
  start (): void {
    this.#timer = setTimeout(() => {
      this.#o.tick().finally(() => {
        if (this.#o.running()) this.start()
      }).catch(() => {})
    }, this.#o.intervalMs)
    this.#timer.unref()
  }

  /** Cancel the next tick (one that has started runs to its end). */
  stop (): void {
    clearTimeout(this.#timer)
  }

  /** Queue one early flush. False, and nothing queued, while one is queued already. */
  flushSoon (): boolean {
    if (this.#earlyQueued) return false
    this.#earlyQueued = true
    setImmediate(() => {
      this.#earlyQueued = false
      this.#o.flush().catch((err: unknown) => this.#o.logger.error({ err }, 'early flush failed'))
    })
    return true
  }
}
