import { randomUUID } from 'node:crypto'

/**
 * Time as the collector sees it. Injected so that windows, expiry and backoff
 * are tested by moving a clock instead of sleeping.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now (): number
}

/** The wall clock. */
export const systemClock: Clock = Object.freeze({ now: () => Date.now() })

/** A clock that only moves when told to; for tests and simulations. */
export class ManualClock implements Clock {
  #now: number
  constructor (start = Date.UTC(2026, 0, 1)) {
    this.#now = start
  }

  now (): number {
    return this.#now
  }

  /** Move forward by `ms`. */
  advance (ms: number): number {
    this.#now += ms
    return this.#now
  }

  /** Jump to an absolute time. */
  set (ms: number): void {
    this.#now = ms
  }
}

/** Makes report ids. Must never repeat. @default crypto.randomUUID */
export type IdSource = () => string

/** Random UUIDs (RFC 9562 v4). */
export const randomIds: IdSource = () => randomUUID()
