import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import Database from 'better-sqlite3'
import { emptyCounters } from '../../src/meter/index.ts'
import type { OutboxEntry, UsagePolicy } from '../../src/meter/index.ts'
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
    const dir = mkdtempSync(join(tmpdir(), 'sm-schema1-'))
    const path = join(dir, 'usage.db')
    const stores: SqliteStore[] = []
    t.after(async () => {
      for (const s of stores) await s.close()
      rmSync(dir, { recursive: true, force: true })
    })
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

    // Upgraded once: the file now says schema 2 and opens as it is.
    const db = new Database(path, { readonly: true })
    assert.equal(db.pragma('user_version', { simple: true }), 2)
    db.close()
    const again = new SqliteStore(path, POLICY)
    stores.push(again)
    assert.deepEqual((await again.outbox()).map((e) => e.reportId), ['next', 'big.1', 'big.2', 'later', 'new'])
  })
})
