import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import Database from 'better-sqlite3'
import { emptyCounters } from '../../src/meter/index.ts'
import type { OutboxEntry, UsagePolicy } from '../../src/meter/index.ts'
import type { Grant } from '../../src/store/access-store.ts'
import { SqliteStore } from '../../src/store/index.ts'

const POLICY: UsagePolicy = { minBytes: 1000, accumulatorTimeoutMs: 10_000, maxIps: 3, maxSessions: 2 }
const T0 = 1_700_000_000_000

/** The tables as schema 1 (the first release) wrote them, verbatim. */
const SCHEMA_1 = `
CREATE TABLE IF NOT EXISTS usage (
  uid        TEXT PRIMARY KEY,
  bytes      INTEGER NOT NULL,
  requests   INTEGER NOT NULL,
  file_types TEXT NOT NULL,
  ips        TEXT NOT NULL,
  sessions   TEXT NOT NULL,
  start_ms   INTEGER NOT NULL,
  last_ms    INTEGER NOT NULL,
  qualified  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_by_expiry ON usage (qualified, start_ms);
CREATE INDEX IF NOT EXISTS usage_by_bytes ON usage (bytes DESC);
CREATE TABLE IF NOT EXISTS outbox (
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
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value
);
`

/** The counters schema 1 knew. */
const COUNTERS_1 = {
  total_recorded_uids: 7,
  reports_created: 5,
  total_reports_sent: 2,
  total_bytes_reported: 9000,
  reports_failed: 4,
  accumulator_cleanups: 1,
  bytes_discarded: 300,
  windows_sealed: 2,
  last_success_at: T0 - 5000,
  last_error_at: T0 - 1000,
  last_error: 'report endpoint answered HTTP 413'
}

/** A schema-1 file with a live record, three undelivered reports (one retried) and the counters. */
function writeVersion1 (path: string): void {
  const db = new Database(path)
  db.pragma('journal_mode = WAL')
  db.exec(SCHEMA_1)
  db.prepare('INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)').run('live', 400, 2, '{"ts":400}', '["10.0.0.1"]', '[]', T0, T0 + 5, 0)
  const insert = db.prepare('INSERT INTO outbox (report_id, created_ms, body, uids, bytes, attempts, last_error, last_attempt_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
  // Seqs 1 and 2 were delivered: the next seq is 3 (AUTOINCREMENT remembers).
  db.prepare("INSERT INTO sqlite_sequence (name, seq) VALUES ('outbox', 2)").run()
  insert.run('big', T0 - 2000, '{"lines":[["a",3000],["b",2000]]}', 2, 5000, 9, 'report endpoint answered HTTP 413', T0 - 1000)
  insert.run('next', T0 - 2000, '{"lines":[["c",1500]]}', 1, 1500, 0, null, null)
  insert.run('later', T0 - 1000, '{"lines":[["d",1200]]}', 1, 1200, 0, null, null)
  const meta = db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)')
  for (const [key, value] of Object.entries(COUNTERS_1)) meta.run(key, value)
  meta.run('next_seal_at', T0 + 60_000)
  db.pragma('user_version = 1')
  db.close()
}

function entry (seq: number, reportId: string, createdAt: number, body: string, uids: number, bytes: number, more: Partial<OutboxEntry> = {}): OutboxEntry {
  return { seq, reportId, createdAt, body, uids, bytes, attempts: 0, ...more }
}

describe('sqlite store: a file of schema 1 opens and upgrades in place', () => {
  it('keeps its records, reports (order, bodies, attempts), counters and schedule, and parks, splits and retries', async (t) => {
    const { path, stores } = tempFile(t, 'sm-schema1-')
    writeVersion1(path)

    const store = new SqliteStore(path, POLICY)
    stores.push(store)
    const big = entry(3, 'big', T0 - 2000, '{"lines":[["a",3000],["b",2000]]}', 2, 5000, {
      attempts: 9, lastError: 'report endpoint answered HTTP 413', lastAttemptAt: T0 - 1000
    })
    const next = entry(4, 'next', T0 - 2000, '{"lines":[["c",1500]]}', 1, 1500)
    const later = entry(5, 'later', T0 - 1000, '{"lines":[["d",1200]]}', 1, 1200)
    assert.deepEqual(await store.outbox(), [big, next, later])
    assert.deepEqual(await store.outboxHead(), big)
    assert.deepEqual(await store.outboxStats(), { pending: 3, pendingBytes: 7700, oldestCreatedAt: T0 - 2000, parked: 0, parkedBytes: 0 })
    assert.deepEqual(await store.counters(), { ...emptyCounters(), ...COUNTERS_1 })
    assert.equal(await store.nextSealAt(), T0 + 60_000)
    assert.deepEqual((await store.records()).map((r) => [r.uid, r.bytes, r.ips]), [['live', 400, ['10.0.0.1']]])

    // The upgraded file does what schema 2 is for.
    const parts = [
      { reportId: 'big.1', body: '{"lines":[["a",3000]]}', uids: 1, bytes: 3000 },
      { reportId: 'big.2', body: '{"lines":[["b",2000]]}', uids: 1, bytes: 2000 }
    ]
    assert.equal(await store.outboxSplit('big', parts, 'report endpoint answered HTTP 413', T0, { status: 413 }), true)
    assert.equal(await store.outboxPark('next', 'report endpoint answered HTTP 400', T0 + 1, { status: 400 }), true)
    assert.deepEqual((await store.outboxList()).map((e) => [e.reportId, e.seq, e.parkedAt ?? null]), [
      ['big.1', 6, null], ['big.2', 7, null], ['later', 5, null], ['next', 4, T0 + 1]
    ])
    assert.deepEqual(await store.outboxRetry('next'), ['next'])
    assert.deepEqual((await store.outbox()).map((e) => e.reportId), ['next', 'big.1', 'big.2', 'later'])
    assert.equal((await store.outbox())[0]?.body, next.body)
    // A seal after the upgrade goes to the end, with the next seq.
    await store.flush([{ uid: 'e', bytes: 2000, requests: 1, fileTypes: { ts: 2000 }, ips: [], sessions: [], firstSeen: T0, lastSeen: T0 }])
    const sealed = await store.seal({ now: T0 + 60_000, intervalMs: 60_000, render: (records) => [{ reportId: 'new', body: '{}', uids: records.length, bytes: 2000 }] })
    assert.deepEqual(sealed.reports.map((r) => [r.reportId, r.seq]), [['new', 8]])
    assert.deepEqual((await store.outbox()).map((e) => e.reportId), ['next', 'big.1', 'big.2', 'later', 'new'])
    await store.close()

    // Upgraded once: the file now says schema 3, has the access tables, and opens as it is.
    const again = reopenedAtSchema3(path, stores)
    assert.deepEqual((await again.outbox()).map((e) => e.reportId), ['next', 'big.1', 'big.2', 'later', 'new'])
  })
})

/** The 1 → 2 step as schema 2 (the release before the access state) ran it, verbatim. */
const STEP_2 = `
ALTER TABLE outbox ADD COLUMN ord REAL;
ALTER TABLE outbox ADD COLUMN rejections INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN last_status INTEGER;
ALTER TABLE outbox ADD COLUMN parked_ms INTEGER;
CREATE INDEX outbox_delivery ON outbox (coalesce(ord, seq)) WHERE parked_ms IS NULL;
CREATE INDEX outbox_state ON outbox (parked_ms, created_ms, bytes);
`

/** Tables and indexes of schema 2, by name. */
const TABLES_2 = ['meta', 'outbox', 'outbox_delivery', 'outbox_state', 'sqlite_sequence', 'usage', 'usage_by_bytes', 'usage_by_expiry']
/** What schema 3 adds: the access state (src/store/access-sqlite.ts). */
const ACCESS_TABLES = [
  'access_grants', 'access_grants_by_expiry', 'access_grants_by_network',
  'access_sessions', 'access_sessions_by_expiry', 'access_sessions_by_uid',
  'access_uses', 'access_uses_by_expiry'
]

/** A database path in a fresh directory; the stores pushed to `stores` are closed and the directory removed when the test ends. */
function tempFile (t: TestContext, prefix: string): { path: string, stores: SqliteStore[] } {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  const stores: SqliteStore[] = []
  t.after(async () => {
    for (const s of stores) await s.close()
    rmSync(dir, { recursive: true, force: true })
  })
  return { path: join(dir, 'usage.db'), stores }
}

/** After the upgrade: the file says schema 3 and has the access tables; it opens again as it is. */
function reopenedAtSchema3 (path: string, stores: SqliteStore[]): SqliteStore {
  const db = new Database(path, { readonly: true })
  assert.equal(db.pragma('user_version', { simple: true }), 3)
  assert.deepEqual(tablesOf(db), [...TABLES_2, ...ACCESS_TABLES].sort())
  db.close()
  const again = new SqliteStore(path, POLICY)
  stores.push(again)
  return again
}

/** The names of a file's tables and indexes, SQLite's automatic ones left out. */
function tablesOf (db: Database.Database): string[] {
  return db.prepare<[], string>("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_autoindex_%' ORDER BY name").pluck().all()
}

describe('sqlite store: a file of schema 2 opens and gains the access tables', () => {
  it('keeps its records, reports and counters, and keeps grants, sessions, use counts and the epoch', async (t) => {
    const { path, stores } = tempFile(t, 'sm-schema2-')
    writeVersion1(path)
    const old = new Database(path)
    old.exec(STEP_2)
    old.pragma('user_version = 2')
    assert.deepEqual(tablesOf(old), [...TABLES_2].sort())
    old.close()

    const store = new SqliteStore(path, POLICY)
    stores.push(store)
    assert.deepEqual((await store.outbox()).map((e) => e.reportId), ['big', 'next', 'later'])
    assert.deepEqual(await store.counters(), { ...emptyCounters(), ...COUNTERS_1 })
    assert.deepEqual((await store.records()).map((r) => [r.uid, r.bytes]), [['live', 400]])

    const grant: Grant = {
      uid: 'alice',
      network: '203.0.113.0/24',
      agent: 'a1',
      userAgent: 'Player/1.0',
      clientIp: '203.0.113.7',
      directory: '/videos/t1/',
      grantedAt: T0,
      expiresAt: T0 + 60_000
    }
    assert.equal(await store.access.epoch(), '0')
    assert.deepEqual(await store.access.putGrant(grant, { perUid: 5, pathsPerNetwork: 3 }), { renewed: false, evicted: [] })
    await store.access.putSessions([{ id: 's1', uid: 'alice', network: grant.network, agent: 'a1', directory: grant.directory, expiresAt: T0 + 60_000 }])
    assert.equal(await store.access.countUse('k', T0 + 60_000), 1)
    assert.deepEqual(await store.access.revoke('bob', T0), { grants: 0, sessions: 0 })
    await store.close()

    const again = reopenedAtSchema3(path, stores)
    assert.deepEqual(await again.access.grantsOf('alice', T0), [grant])
    assert.equal((await again.access.session('s1', T0))?.uid, 'alice')
    assert.equal(await again.access.countUse('k', T0 + 60_000), 2)
    assert.equal(await again.access.epoch(), '1')
    // expire() removes what expired, whoever asks next.
    await again.expire(T0 + 60_000)
    const raw = new Database(path, { readonly: true })
    const left = ['access_grants', 'access_sessions', 'access_uses'].map((table) => raw.prepare(`SELECT count(*) FROM ${table}`).pluck().get())
    raw.close()
    assert.deepEqual(left, [0, 0, 0])
  })
})
