import type Database from 'better-sqlite3'
import { StoreError } from '../errors.ts'
import { emptyCounters } from '../meter/index.ts'
import type { OutboxEntry, UsageRecord } from '../meter/index.ts'

// Tables of the sqlite store and the conversions between rows and the meter's types.

/** Bumped with every incompatible change to the tables below (kept in `PRAGMA user_version`). */
export const SCHEMA_VERSION = 1

const SCHEMA = `
CREATE TABLE IF NOT EXISTS usage (
  uid        TEXT PRIMARY KEY,
  bytes      INTEGER NOT NULL,
  requests   INTEGER NOT NULL,
  file_types TEXT NOT NULL,    -- JSON object {type: bytes}
  ips        TEXT NOT NULL,    -- JSON array, first seen first
  sessions   TEXT NOT NULL,    -- JSON array, first seen first
  start_ms   INTEGER NOT NULL,
  last_ms    INTEGER NOT NULL,
  qualified  INTEGER NOT NULL  -- 0 | 1
);
-- expire() scans sub-threshold cycles by age; seal() takes qualified = 1.
CREATE INDEX IF NOT EXISTS usage_by_expiry ON usage (qualified, start_ms);
-- summary() takes the top N by bytes.
CREATE INDEX IF NOT EXISTS usage_by_bytes ON usage (bytes DESC);
CREATE TABLE IF NOT EXISTS outbox (
  -- AUTOINCREMENT: a seq is never reused, even after the outbox was emptied.
  seq             INTEGER PRIMARY KEY AUTOINCREMENT,
  report_id       TEXT NOT NULL UNIQUE,
  created_ms      INTEGER NOT NULL,
  body            TEXT NOT NULL,
  uids            INTEGER NOT NULL,
  bytes           INTEGER NOT NULL,
  attempts        INTEGER NOT NULL DEFAULT 0,
  last_error      TEXT,
  last_attempt_ms INTEGER
);
-- next_seal_at and the StoreCounters. No declared type on value: counters are
-- numbers and last_error is text, and SQLite keeps each as given.
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value
);
`

export interface UsageRow {
  uid: string
  bytes: number
  requests: number
  file_types: string
  ips: string
  sessions: string
  start_ms: number
  last_ms: number
  qualified: number
}

export interface OutboxRow {
  seq: number
  report_id: string
  created_ms: number
  body: string
  uids: number
  bytes: number
  attempts: number
  last_error: string | null
  last_attempt_ms: number | null
}

/** Create or check the schema, in one transaction so that two processes opening a new file agree. */
export function migrate (db: Database.Database): void {
  db.transaction(() => {
    const version = Number(db.pragma('user_version', { simple: true }))
    if (version > SCHEMA_VERSION) {
      throw new StoreError(`the sqlite store was written by a newer streammeter (schema ${version}, this build knows ${SCHEMA_VERSION})`)
    }
    db.exec(SCHEMA)
    // Counters exist from the start, so that updates are plain `value + n`.
    const init = db.prepare<[string, number | string]>('INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)')
    for (const [key, value] of Object.entries(emptyCounters())) init.run(key, value)
    if (version < SCHEMA_VERSION) db.pragma(`user_version = ${SCHEMA_VERSION}`)
  }).immediate()
}

export function toRecord (row: UsageRow): UsageRecord {
  return {
    uid: row.uid,
    bytes: row.bytes,
    requests: row.requests,
    fileTypes: JSON.parse(row.file_types) as Record<string, number>,
    ips: JSON.parse(row.ips) as string[],
    sessions: JSON.parse(row.sessions) as string[],
    startTime: row.start_ms,
    lastActivity: row.last_ms,
    qualified: row.qualified === 1
  }
}

export function toRow (r: UsageRecord): UsageRow {
  return {
    uid: r.uid,
    bytes: r.bytes,
    requests: r.requests,
    file_types: JSON.stringify(r.fileTypes),
    ips: JSON.stringify(r.ips),
    sessions: JSON.stringify(r.sessions),
    start_ms: r.startTime,
    last_ms: r.lastActivity,
    qualified: r.qualified ? 1 : 0
  }
}

export function toEntry (row: OutboxRow): OutboxEntry {
  const entry: OutboxEntry = {
    seq: row.seq,
    reportId: row.report_id,
    createdAt: row.created_ms,
    body: row.body,
    uids: row.uids,
    bytes: row.bytes,
    attempts: row.attempts
  }
  // Absent rather than undefined, exactly like MemoryStore's entries.
  if (row.last_error !== null) entry.lastError = row.last_error
  if (row.last_attempt_ms !== null) entry.lastAttemptAt = row.last_attempt_ms
  return entry
}
