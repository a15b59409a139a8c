import type { Clock } from './clock.ts'
import type { MeterLogger } from './logger.ts'

/** A wall clock that moved this much more (or less) than the monotonic one between ticks is logged, in ms. */
const CLOCK_JUMP_WARN_MS = 5000

/**
 * Logs a jump of the wall clock (against the monotonic one) between two
 * ticks: it explains an early seal (forward) or one that seals at once
 * (back: src/meter/seal-schedule.ts), and sub-threshold cycles that expire
 * early (forward) or late (back), since expiry follows the wall clock.
 */
export class ClockWatch {
  readonly #clock: Clock
  readonly #logger: MeterLogger
  /** Wall and monotonic time of the last tick. */
  #last: { wall: number, mono: number } | undefined

  constructor (clock: Clock, logger: MeterLogger) {
    this.#clock = clock
    this.#logger = logger
  }

  /** Compare both clocks with the last call's readings; called once per tick. */
  check (): void {
    const wall = this.#clock.now()
    // Real elapsed time, the yardstick the injected clock is held against:
    // read from that clock itself, no jump would ever show.
    const mono = performance.now()
    const last = this.#last
    this.#last = { wall, mono }
    if (last === undefined) return
    const jump = (wall - last.wall) - (mono - last.mono)
    if (Math.abs(jump) > CLOCK_JUMP_WARN_MS) {
      this.#logger.warn({ jumpSeconds: Math.round(jump / 1000) },
        'the wall clock jumped: a window may seal early, and sub-threshold usage may expire early (forward) or late (back)')
    }
  }
}
