import type Database from 'better-sqlite3'
import { StoreError } from '../errors.ts'
import { emptyCounters } from '../meter/index.ts'
import type { OutboxEntry, UsageRecord } from '../meter/index.ts'

// Tables of the sqlite store and the conversions between rows and the meter's types.

/**
 * Bumped with every incompatible change to the tables below (kept in `PRAGMA
 * user_version`); {@link MIGRATIONS} brings older files up to it.
 */
export const SCHEMA_VERSION = 3

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
-- next_seal_at and scheduled_at (when it was set), the StoreCounters, the
-- reporter lease (LEASE_KEY) and the access epoch (ACCESS_EPOCH_KEY). No
-- declared type on value: counters are numbers, last_error and the lease are
-- text, and SQLite keeps each as given.
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

/** A `usage` row as an array, in the table's column order. */
export type UsageColumns = [uid: string, bytes: number, requests: number, fileTypes: string, ips: string, sessions: string, startMs: number, lastMs: number, qualified: number]
/** {@link UsageColumns} and the row's rowid, as a flush reads a row to update it. */
export type StoredUsageColumns = [...UsageColumns, rowid: number]

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
  last_status: number | null
  rejections: number
  parked_ms: number | null
}

/**
 * How a file of schema `n` becomes schema `n + 1`. `SCHEMA` above is schema
 * 1; a new file is created with it and then goes through every step, like
 * an old file, so that both end with the same tables.
 */
const MIGRATIONS: Readonly<Record<number, string>> = {
  // 1 → 2: refused reports are parked, split in place and put back
  // (src/store/sqlite-outbox.ts). `ord`: the place in the delivery order
  // when it is not `seq` (halves of a split, a report put back at the head);
  // refusals; the receiver's last status; when the report was parked.
  1: `
    ALTER TABLE outbox ADD COLUMN ord REAL;
    ALTER TABLE outbox ADD COLUMN rejections INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE outbox ADD COLUMN last_status INTEGER;
    ALTER TABLE outbox ADD COLUMN parked_ms INTEGER;
    -- outboxHead(): the delivery order of the reports not parked.
    CREATE INDEX outbox_delivery ON outbox (coalesce(ord, seq)) WHERE parked_ms IS NULL;
    -- outboxStats() (and so the /health probe) from the index alone, without
    -- reading rows whose bodies span overflow pages.
    CREATE INDEX outbox_state ON outbox (parked_ms, created_ms, bytes);`,
  // 2 → 3: the access state every process on the file shares
  // (src/store/access-sqlite.ts, docs/access.md): grants, sessions and use
  // counts; the epoch is a row of `meta` (ACCESS_EPOCH_KEY). Each table has
  // an index on its expiry, so that expire() deletes a range, not a scan.
  2: `
    CREATE TABLE access_grants (
      uid        TEXT NOT NULL,
      network    TEXT NOT NULL,
      agent      TEXT NOT NULL,     -- the User-Agent's hash
      directory  TEXT NOT NULL,
      user_agent TEXT NOT NULL,     -- as posted, for listing
      client_ip  TEXT NOT NULL,
      granted_at INTEGER NOT NULL,
      expires_at INTEGER NOT NULL,
      PRIMARY KEY (uid, network, agent, directory)
    );
    -- grantsIn(): every uid's grants in one network.
    CREATE INDEX access_grants_by_network ON access_grants (network);
    CREATE INDEX access_grants_by_expiry ON access_grants (expires_at);
    CREATE TABLE access_sessions (
      id         TEXT PRIMARY KEY,
      uid        TEXT NOT NULL,
      network    TEXT NOT NULL,
      agent      TEXT NOT NULL,
      directory  TEXT NOT NULL,
      expires_at INTEGER NOT NULL
    );
    -- revoke(): a uid's sessions.
    CREATE INDEX access_sessions_by_uid ON access_sessions (uid);
    CREATE INDEX access_sessions_by_expiry ON access_sessions (expires_at);
    CREATE TABLE access_uses (
      key   TEXT PRIMARY KEY,
      count INTEGER NOT NULL,
      until INTEGER NOT NULL        -- kept at least until then
    );
    CREATE INDEX access_uses_by_expiry ON access_uses (until);`
}

/**
 * The `meta` row of the access epoch (src/store/access-sqlite.ts): a
 * number bumped whenever access is taken back. Absent until the first time.
 */
export const ACCESS_EPOCH_KEY = 'access_epoch'

/**
 * The `meta` row of the reporter lease. A row of `meta` rather than a table of
 * its own: files written before the lease existed open unchanged (same schema
 * version), and a build without it ignores the row.
 */
export const LEASE_KEY = 'reporter_lease'

/** The reporter lease, stored as JSON under {@link LEASE_KEY}. */
export interface LeaseRow {
  /** Who holds it; null when free. */
  holder: string | null
  /** Until when, ms since the epoch; a holder renews it every tick. */
  expiresAt: number
  /** Bumped for every new holder, never reset: a later holder always has a greater number. */
  fence: number
  /** The holder's process id, so that a lease whose process ended is free at once. */
  pid: number | null
  /** Where `pid` means something (a pid namespace or a host). */
  pidSpace: string | null
}

/** The lease a `meta` value holds; a free lease with fence 0 when there is none yet. */
export function parseLease (value: unknown): LeaseRow {
  const free: LeaseRow = { holder: null, expiresAt: 0, fence: 0, pid: null, pidSpace: null }
  if (typeof value !== 'string') return free
  const row = JSON.parse(value) as Partial<LeaseRow>
  return {
    holder: typeof row.holder === 'string' ? row.holder : null,
    expiresAt: typeof row.expiresAt === 'number' ? row.expiresAt : 0,
    fence: typeof row.fence === 'number' ? row.fence : 0,
    pid: typeof row.pid === 'number' ? row.pid : null,
    pidSpace: typeof row.pidSpace === 'string' ? row.pidSpace : null
  }
}

/**
 * Create, check or upgrade the schema, in one transaction so that two
 * processes opening a file agree: a new file gets the current schema, an
 * older one its {@link MIGRATIONS} (its data kept), a newer one is refused.
 */
export function migrate (db: Database.Database): void {
  db.transaction(() => {
    const version = Number(db.pragma('user_version', { simple: true }))
    if (version > SCHEMA_VERSION) {
      throw new StoreError(`the sqlite store was written by a newer streammeter (schema ${version}, this build knows ${SCHEMA_VERSION})`)
    }
    db.exec(SCHEMA)
    for (let v = Math.max(version, 1); v < SCHEMA_VERSION; v++) {
      const step = MIGRATIONS[v]
      if (step === undefined) throw new StoreError(`no migration from sqlite store schema ${v}`)
      db.exec(step)
    }
    // Counters exist from the start, so that updates are plain `value + n`.
    const init = db.prepare<[string, number | string]>('INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)')
    for (const [key, value] of Object.entries(emptyCounters())) init.run(key, value)
    if (version < SCHEMA_VERSION) db.pragma(`user_version = ${SCHEMA_VERSION}`)
  }).immediate()
}

export function toRecord (row: UsageRow): UsageRecord {
  return columnsToRecord([row.uid, row.bytes, row.requests, row.file_types, row.ips, row.sessions, row.start_ms, row.last_ms, row.qualified])
}

/** A row read as {@link UsageColumns} (the flush's hot path reads rows as arrays). */
export function columnsToRecord (c: UsageColumns | StoredUsageColumns): UsageRecord {
  return {
    uid: c[0],
    bytes: c[1],
    requests: c[2],
    fileTypes: JSON.parse(c[3]) as Record<string, number>,
    ips: JSON.parse(c[4]) as string[],
    sessions: JSON.parse(c[5]) as string[],
    startTime: c[6],
    lastActivity: c[7],
    qualified: c[8] === 1
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
  if (row.last_status !== null) entry.lastStatus = row.last_status
  if (row.rejections > 0) entry.rejections = row.rejections
  if (row.parked_ms !== null) entry.parkedAt = row.parked_ms
  return entry
}
