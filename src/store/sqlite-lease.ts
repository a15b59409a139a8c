import { readlinkSync } from 'node:fs'
import { hostname } from 'node:os'
import type { Clock } from '../meter/index.ts'
import { LEASE_KEY, parseLease } from './sqlite-schema.ts'
import type { LeaseRow } from './sqlite-schema.ts'
import type { SqliteStatements } from './sqlite-statements.ts'

/**
 * Who can tell whether a lease holder's process still runs: processes that
 * see the same process ids. On Linux that is a pid namespace (containers
 * sharing the file may each have their own); elsewhere one host. Undefined
 * when it cannot be told, and then only the lease's expiry counts.
 */
const PID_SPACE: string | undefined = (() => {
  if (process.platform !== 'linux') return `${process.platform}:${hostname()}`
  try {
    return readlinkSync('/proc/self/ns/pid')
  } catch {
    return undefined
  }
})()

/**
 * The reporter lease of the sqlite store, a row of `meta` ({@link LEASE_KEY}),
 * for several processes on one file (`--workers N`). Each method runs in the
 * caller's transaction (see `SqliteStore.leadership`).
 */
export class SqliteLease {
  readonly #sql: SqliteStatements
  readonly #clock: Clock

  constructor (sql: SqliteStatements, clock: Clock) {
    this.#sql = sql
    this.#clock = clock
  }

  /** Take a free or expired lease, or renew `holder`'s: its fencing number, or 0 while another holder has it. */
  hold (holder: string, ttlMs: number): number {
    const now = this.#clock.now()
    const lease = parseLease(this.#sql.getMeta.get(LEASE_KEY))
    const live = lease.holder !== null && lease.expiresAt > now
    if (live && lease.holder === holder) {
      this.#set({ ...lease, expiresAt: now + ttlMs })
      return lease.fence
    }
    if (live && !holderGone(lease)) return 0
    const fence = lease.fence + 1
    this.#set({ holder, expiresAt: now + ttlMs, fence, pid: process.pid, pidSpace: PID_SPACE ?? null })
    return fence
  }

  /** Free the lease if `holder` has it. */
  release (holder: string): void {
    const lease = parseLease(this.#sql.getMeta.get(LEASE_KEY))
    // The fence stays: the next holder's number must be greater than every earlier one.
    if (lease.holder === holder) this.#set({ holder: null, expiresAt: 0, fence: lease.fence, pid: null, pidSpace: null })
  }

  #set (lease: LeaseRow): void {
    this.#sql.setMeta.run(LEASE_KEY, JSON.stringify(lease))
  }
}

/**
 * Whether the process that took `lease` has provably ended: it ran where this
 * process sees the same process ids, and no process has that id now. A
 * process that cannot be signalled (EPERM) exists; a reused id looks alive,
 * and then the lease's expiry decides, as it does elsewhere.
 */
function holderGone (lease: LeaseRow): boolean {
  if (lease.pid === null || lease.pid === process.pid || PID_SPACE === undefined || lease.pidSpace !== PID_SPACE) return false
  try {
    process.kill(lease.pid, 0)
    return false
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH'
  }
}
