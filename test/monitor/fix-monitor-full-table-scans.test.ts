import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { it } from 'node:test'
import type { TestContext } from 'node:test'
import Database from 'better-sqlite3'
import type { UsageDelta, UsagePolicy, UsageStore } from '../../src/meter/index.ts'
import { SqliteStore } from '../../src/store/index.ts'

const POLICY: UsagePolicy = { minBytes: 1000, accumulatorTimeoutMs: 10_000, maxIps: 3, maxSessions: 2 }
const T0 = 1_700_000_000_000

function delta (uid: string, bytes: number, at = T0): UsageDelta {
  return { uid, bytes, requests: 1, fileTypes: { ts: bytes }, ips: [], sessions: [], firstSeen: at, lastSeen: at }
}

function dbPath (t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'sm-totals-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return join(dir, 'usage.db')
}

/** The summary's counts as a scan of records() gives them. */
async function scanned (store: UsageStore): Promise<number[]> {
  const records = await store.records()
  const q = records.filter((r) => r.qualified)
  const p = records.filter((r) => !r.qualified)
  return [q.length, q.reduce((s, r) => s + r.bytes, 0), p.length, p.reduce((s, r) => s + r.bytes, 0)]
}

async function counted (store: UsageStore): Promise<number[]> {
  const s = await store.summary(0)
  return [s.qualifiedUids, s.qualifiedBytes, s.pendingUids, s.pendingBytes]
}

// Found: an open /monitor asks for the window summary every second, and the
// SQLite store answered with a GROUP BY over every record, on the main
// thread. The totals are now kept with every write.
it('the SQLite summary reads kept totals, not a scan of every record, and they stay exact', async (t) => {
  const path = dbPath(t)
  const store = new SqliteStore(path, POLICY)
  t.after(() => store.close())
  await store.seal({ now: T0, intervalMs: 60_000, render: () => [] })
  await store.flush([delta('a', 500), delta('b', 1500), delta('c', 200)])
  await store.flush([delta('a', 600), delta('c', 100, T0 + 20_000), delta('d', 10)])
  assert.deepEqual(await counted(store), await scanned(store))
  assert.deepEqual(await counted(store), [2, 2600, 2, 110])
  await store.expire(T0 + 25_000) // d expires; c started a new cycle at T0 + 20 s
  assert.deepEqual(await counted(store), await scanned(store))
  const render = (records: readonly { uid: string, bytes: number }[]): Array<{ reportId: string, body: string, uids: number, bytes: number }> =>
    [{ reportId: 'r1', body: '{}', uids: records.length, bytes: records.reduce((s, r) => s + r.bytes, 0) }]
  await store.seal({ now: T0 + 60_000, intervalMs: 60_000, render })
  assert.deepEqual(await counted(store), await scanned(store))
  assert.deepEqual(await counted(store), [0, 0, 1, 100])

  // Rows removed behind the store's back do not change what it counts: it
  // does not look at the rows.
  const other = new Database(path)
  other.prepare('DELETE FROM usage').run()
  other.close()
  assert.deepEqual(await counted(store), [0, 0, 1, 100])
})

it('a file written before the totals existed gets them counted once at open', async (t) => {
  const path = dbPath(t)
  const first = new SqliteStore(path, POLICY)
  await first.flush([delta('a', 5000), delta('b', 10), delta('c', 20)])
  await first.close()
  const raw = new Database(path)
  raw.prepare("DELETE FROM meta WHERE key IN ('q_uids', 'q_bytes', 'p_uids', 'p_bytes')").run()
  raw.close()
  const store = new SqliteStore(path, POLICY)
  t.after(() => store.close())
  assert.deepEqual(await counted(store), [1, 5000, 2, 30])
})
