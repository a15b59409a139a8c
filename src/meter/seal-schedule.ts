/**
 * When a window is due to be sealed, with a wall clock that may jump (an
 * operator fixing the date, a VM restored from a snapshot, NTP stepping).
 * Every store applies this rule (the Redis store restates it in Lua), so a
 * seal's timing is the same whichever store or instance decides.
 *
 * The schedule is wall-clock time, because with a shared store every
 * instance must read the same `next_seal_at`. Alone that fails one way:
 * a clock set forward a year seals once and schedules the next seal a year
 * ahead; once the clock is put right, nothing would seal for a year. So the
 * store also keeps `scheduledAt`, the time of the seal (or first call) that
 * set the schedule. A `now` before it means the clock went back: the
 * schedule is then meaningless and the window is sealed at once, which
 * starts a new schedule from the corrected clock. A clock set forward seals
 * once (it passed `next_seal_at`), then waits one interval as usual.
 */

/**
 * How far `now` may fall behind `scheduledAt` before it counts as the clock
 * going back, in ms. Instances sharing a store are never in perfect step: a
 * reporter whose clock is a little behind the previous one's must not seal
 * again at once for that alone. @default 5000
 */
export const CLOCK_BACK_SLACK_MS = 5000

/** The schedule a store holds: undefined fields before the first call. */
export interface SealSchedule {
  /** When the next seal is due, ms since the epoch. */
  nextSealAt: number | undefined
  /** When that schedule was set (the last seal, or the first call), ms since the epoch. */
  scheduledAt: number | undefined
}

/**
 * What a `seal()` call at `now` does: `schedule` (the first call on a fresh
 * store, unless forced), `wait` (not due), or `seal`.
 */
export function sealDecision (schedule: SealSchedule, now: number, force: boolean): 'schedule' | 'wait' | 'seal' {
  if (force) return 'seal'
  const { nextSealAt, scheduledAt } = schedule
  if (nextSealAt === undefined) return 'schedule'
  if (now >= nextSealAt) return 'seal'
  if (scheduledAt !== undefined && now < scheduledAt - CLOCK_BACK_SLACK_MS) return 'seal'
  return 'wait'
}
