import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import Database from 'better-sqlite3'
import { StoreError } from '../errors.ts'
import { messageOf } from './sqlite-busy-retry.ts'
import { sqliteRuntimeProblem } from './sqlite-runtime.ts'
import { migrate } from './sqlite-schema.ts'
import { ensureTotals } from './sqlite-totals.ts'

/** How long opening the file may wait for another process's lock, in ms (nothing is served yet). */
const OPEN_BUSY_TIMEOUT_MS = 5000

/**
 * Open (or create) the store's database at `path` (absolute, or `:memory:`),
 * creating missing parent directories, upgraded to the current schema.
 * @throws {StoreError} when it cannot be opened or was written by a newer schema.
 */
export function openSqlite (path: string): Database.Database {
  let db: Database.Database | undefined
  try {
    const problem = sqliteRuntimeProblem()
    if (problem !== undefined) throw new StoreError(problem)
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true })
    db = new Database(path)
    // Opening may wait for another process's write lock (a worker's
    // flush): nothing is served yet. After that the timeout is 0 and the
    // store retries a locked database asynchronously (sqlite-busy-retry.ts).
    db.pragma(`busy_timeout = ${OPEN_BUSY_TIMEOUT_MS}`)
    db.pragma('journal_mode = WAL')
    // NORMAL in WAL mode: a commit survives a crash of this process (the
    // WAL is in the OS page cache) but only a power loss or OS crash can
    // roll back the last commits, and the file stays consistent. That is
    // the flush-interval durability docs/metering.md promises, at a
    // fraction of FULL's fsync per flush. The store's seal is the exception.
    db.pragma('synchronous = NORMAL')
    migrate(db)
    ensureTotals(db)
    db.pragma('busy_timeout = 0')
    return db
  } catch (err) {
    db?.close()
    if (err instanceof StoreError) throw err
    throw new StoreError(`cannot open the sqlite store at ${path}: ${messageOf(err)}`, { cause: err })
  }
}
