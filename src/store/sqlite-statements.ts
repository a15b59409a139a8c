import type Database from 'better-sqlite3'
import { emptyCounters } from '../meter/index.ts'
import type { StoreCounters } from '../meter/index.ts'
import type { StoredUsageColumns, UsageColumns, UsageRow } from './sqlite-schema.ts'

type Statement<P extends unknown[], R = unknown> = Database.Statement<P, R>

/**
 * The statements of the sqlite store on live records, the seal's outbox
 * writes and `meta` (the outbox's own are in src/store/sqlite-outbox.ts).
 * Tables: src/store/sqlite-schema.ts.
 */
export interface SqliteStatements {
  /** A uid's row as {@link StoredUsageColumns} (an array costs a third less than an object per row). */
  readonly getRecord: Statement<[string], StoredUsageColumns>
  /** Positional, in the order of {@link UsageColumns}. */
  readonly insertRecord: Statement<UsageColumns>
  /** The whole row, its rowid last (found by rowid: one index lookup less than by uid). */
  readonly updateRecord: Statement<[number, number, string, string, string, number, number, number, number]>
  /**
   * A row whose cycle start and qualification stay: only the columns a flush
   * adds to, so that SQLite leaves `usage_by_expiry` alone (a fifth less
   * time per uid than writing every column).
   */
  readonly updateUsage: Statement<[number, number, string, string, string, number, number]>
  readonly deleteRecord: Statement<[string]>
  readonly expiryCandidates: Statement<[number], UsageRow>
  readonly qualifiedRecords: Statement<[], UsageRow>
  readonly deleteQualified: Statement<[]>
  readonly allRecords: Statement<[], UsageRow>
  readonly topCutoff: Statement<[number], number>
  readonly recordsFrom: Statement<[number], UsageRow>
  readonly insertOutbox: Statement<[string, number, string, number, number]>
  readonly deleteOutbox: Statement<[string], number>
  readonly getMeta: Statement<[string], unknown>
  readonly setMeta: Statement<[string, number | string]>
  readonly addMeta: Statement<[number, string]>
  readonly allMeta: Statement<[], { key: string, value: unknown }>
}

/** Prepare the {@link SqliteStatements} of `db`, once at open. */
export function prepareStatements (db: Database.Database): SqliteStatements {
  return {
    getRecord: db.prepare<[string], StoredUsageColumns>(
      'SELECT uid, bytes, requests, file_types, ips, sessions, start_ms, last_ms, qualified, rowid FROM usage WHERE uid = ?').raw(),
    insertRecord: db.prepare<UsageColumns>(
      'INSERT INTO usage (uid, bytes, requests, file_types, ips, sessions, start_ms, last_ms, qualified) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)'),
    updateRecord: db.prepare<[number, number, string, string, string, number, number, number, number]>(
      'UPDATE usage SET bytes = ?, requests = ?, file_types = ?, ips = ?, sessions = ?, start_ms = ?, last_ms = ?, qualified = ? WHERE rowid = ?'),
    updateUsage: db.prepare<[number, number, string, string, string, number, number]>(
      'UPDATE usage SET bytes = ?, requests = ?, file_types = ?, ips = ?, sessions = ?, last_ms = ? WHERE rowid = ?'),
    deleteRecord: db.prepare<[string]>('DELETE FROM usage WHERE uid = ?'),
    // rowid order is creation order: the same order MemoryStore's Map iterates in.
    expiryCandidates: db.prepare<[number], UsageRow>(
      'SELECT * FROM usage WHERE qualified = 0 AND start_ms < ? ORDER BY rowid'),
    qualifiedRecords: db.prepare<[], UsageRow>('SELECT * FROM usage WHERE qualified = 1'),
    deleteQualified: db.prepare<[]>('DELETE FROM usage WHERE qualified = 1'),
    allRecords: db.prepare<[], UsageRow>('SELECT * FROM usage ORDER BY rowid'),
    topCutoff: db.prepare<[number], number>(
      'SELECT bytes FROM usage ORDER BY bytes DESC LIMIT 1 OFFSET ?').pluck(),
    recordsFrom: db.prepare<[number], UsageRow>('SELECT * FROM usage WHERE bytes >= ? ORDER BY bytes DESC'),
    insertOutbox: db.prepare<[string, number, string, number, number]>(
      'INSERT INTO outbox (report_id, created_ms, body, uids, bytes) VALUES (?, ?, ?, ?, ?)'),
    deleteOutbox: db.prepare<[string], number>('DELETE FROM outbox WHERE report_id = ? RETURNING bytes').pluck(),
    getMeta: db.prepare<[string], unknown>('SELECT value FROM meta WHERE key = ?').pluck(),
    setMeta: db.prepare<[string, number | string]>(
      'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
    addMeta: db.prepare<[number, string]>('UPDATE meta SET value = value + ? WHERE key = ?'),
    allMeta: db.prepare<[], { key: string, value: unknown }>('SELECT key, value FROM meta')
  }
}

/**
 * The {@link StoreCounters} kept in `meta`, each as the type its default
 * has; the other rows of `meta` (the schedule, totals, lease…) are skipped.
 */
export function readCounters (sql: SqliteStatements): StoreCounters {
  const counters = emptyCounters()
  const slots = counters as unknown as Record<string, number | string>
  for (const { key, value } of sql.allMeta.all()) {
    const slot = slots[key]
    if (typeof slot === 'number') slots[key] = Number(value)
    else if (typeof slot === 'string') slots[key] = String(value)
  }
  return counters
}
