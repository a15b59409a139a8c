import { setTimeout as sleep } from 'node:timers/promises'
import { StoreClosedError, StoreError, StreammeterError } from '../errors.ts'

/**
 * How long an operation keeps retrying a database another process has
 * locked before it fails (the collector then keeps its batch and tries again
 * at the next tick), in ms. @default 30000
 */
const BUSY_RETRY_MS = 30_000

/** An exception thrown by the caller's `render`: it passes through unwrapped, as in MemoryStore. */
export class CallerError {
  readonly error: unknown
  constructor (error: unknown) {
    this.error = error
  }
}

/**
 * Run one operation of the sqlite store: closed check, a locked database
 * retried, and unexpected SQLite failures become StoreError.
 *
 * better-sqlite3 is synchronous: with a busy timeout, a transaction that
 * finds another process holding the write lock (a worker's big flush, a
 * backup, an operator's sqlite3 shell) would wait for it on the event loop,
 * and every request of this process with it (a 4 s lock held a small
 * request for 3.2 s). So the timeout is 0: a locked database fails at once
 * with SQLITE_BUSY, and the operation is tried again after a short pause
 * (2 ms doubling to 50 ms, jittered so that workers do not retry in step)
 * on a timer, for up to {@link BUSY_RETRY_MS}. Nothing was written by a
 * try that failed to begin, so trying again is safe; a seal's `render` runs
 * again and makes new report ids, none of which was stored.
 * @param closed - whether the store is closed, asked before every try
 */
export async function runWithBusyRetry<T> (operation: string, fn: () => T, closed: () => boolean): Promise<T> {
  const started = performance.now()
  for (let attempt = 0; ; attempt++) {
    if (closed()) throw new StoreClosedError()
    try {
      return fn()
    } catch (err) {
      if (err instanceof CallerError) throw err.error
      if (err instanceof StreammeterError) throw err
      if (isBusy(err) && performance.now() - started < BUSY_RETRY_MS) {
        await sleep(Math.min(50, 2 ** (attempt + 1)) * (0.5 + Math.random()))
        continue
      }
      throw new StoreError(`sqlite store ${operation} failed: ${messageOf(err)}`, { cause: err })
    }
  }
}

/** SQLITE_BUSY and its extended codes (SQLITE_BUSY_SNAPSHOT, …): another connection holds a lock. */
function isBusy (err: unknown): boolean {
  const code = (err as { code?: unknown }).code
  return typeof code === 'string' && code.startsWith('SQLITE_BUSY')
}

/** The message of an error, or the thrown value as a string. */
export function messageOf (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
