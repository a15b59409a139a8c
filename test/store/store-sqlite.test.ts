import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import Database from 'better-sqlite3'
import { StoreError } from '../../src/errors.ts'
import type { UsagePolicy, UsageStore } from '../../src/meter/index.ts'
import { SqliteStore, openStore, parseStoreUrl } from '../../src/store/index.ts'
import { SCHEMA_VERSION } from '../../src/store/sqlite-schema.ts'
import { storeContract } from './store-contract.ts'

const POLICY: UsagePolicy = { minBytes: 1000, accumulatorTimeoutMs: 10_000, maxIps: 3, maxSessions: 2 }

/** A fresh directory for this test, removed (after its stores are closed) when the test ends. */
function tempDir (t: TestContext, stores: UsageStore[] = []): string {
  const dir = mkdtempSync(join(tmpdir(), 'streammeter-sqlite-'))
  t.after(async () => {
    for (const store of stores) await store.close()
    rmSync(dir, { recursive: true, force: true })
  })
  return dir
}

/** Every store opened on a file, so that the directory is removed only after all of them are closed. */
const handles = new WeakMap<UsageStore, { path: string, stores: UsageStore[] }>()

storeContract('sqlite', {
  async create (t, policy) {
    const stores: UsageStore[] = []
    // A missing parent directory: the store creates it.
    const path = join(tempDir(t, stores), 'nested', 'usage.db')
    const store = new SqliteStore(path, policy)
    stores.push(store)
    handles.set(store, { path, stores })
    return store
  },
  async reopen (t, previous) {
    const handle = handles.get(previous)
    assert.ok(handle, 'reopen of a store this factory created')
    const store = new SqliteStore(handle.path, previous.policy)
    handle.stores.push(store)
    handles.set(store, handle)
    return store
  }
})

describe('sqlite store specifics', () => {
  it('creates the file in WAL mode with the current schema', async (t) => {
    const dir = tempDir(t)
    const path = join(dir, 'a', 'b', 'usage.db')
    const store = new SqliteStore(path, POLICY)
    assert.equal(store.path, path)
    await store.close()
    const db = new Database(path, { readonly: true })
    t.after(() => db.close())
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal')
    assert.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION)
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").pluck().all()
    assert.deepEqual(tables, ['access_grants', 'access_sessions', 'access_uses', 'meta', 'outbox', 'usage'])
  })

  it('refuses a file written by a newer schema', async (t) => {
    const path = join(tempDir(t), 'usage.db')
    await new SqliteStore(path, POLICY).close()
    const db = new Database(path)
    db.pragma('user_version = 99')
    db.close()
    assert.throws(() => new SqliteStore(path, POLICY), (err) => err instanceof StoreError && err.code === 'SM_ERR_STORE' && /schema 99/.test(err.message))
  })

  it('wraps a file that is not a database in StoreError with the cause', async (t) => {
    const path = join(tempDir(t), 'usage.db')
    writeFileSync(path, 'this is not a database, just text that is long enough to have a header'.repeat(20))
    assert.throws(() => new SqliteStore(path, POLICY), (err) => err instanceof StoreError && err.cause instanceof Error)
  })

  it('a flush that fails part-way applies nothing', async (t) => {
    const stores: UsageStore[] = []
    const store = new SqliteStore(join(tempDir(t, stores), 'usage.db'), POLICY)
    stores.push(store)
    const good = { uid: 'a', bytes: 10, requests: 1, fileTypes: { ts: 10 }, ips: [], sessions: [], firstSeen: 1, lastSeen: 1 }
    // A uid SQLite cannot bind, after a good delta in the same batch.
    const bad = { ...good, uid: { not: 'a string' } as unknown as string }
    await assert.rejects(store.flush([good, bad]), (err) => err instanceof StoreError && err.cause !== undefined)
    assert.deepEqual(await store.records(), [])
    assert.equal((await store.counters()).total_recorded_uids, 0)
  })

  it('a seal whose write fails (duplicate report id) rolls back entirely', async (t) => {
    const stores: UsageStore[] = []
    const store = new SqliteStore(join(tempDir(t, stores), 'usage.db'), POLICY)
    stores.push(store)
    const delta = { uid: 'a', bytes: 2000, requests: 1, fileTypes: { ts: 2000 }, ips: [], sessions: [], firstSeen: 1, lastSeen: 1 }
    await store.flush([delta])
    const render = () => [{ reportId: 'same', body: '{}', uids: 1, bytes: 2000 }]
    await store.seal({ now: 10, intervalMs: 100, force: true, render })
    await store.flush([{ ...delta, firstSeen: 20, lastSeen: 20 }])
    await assert.rejects(store.seal({ now: 200, intervalMs: 100, render }), (err) => err instanceof StoreError && /UNIQUE/.test(err.message))
    assert.equal((await store.records())[0]?.qualified, true)
    assert.equal(await store.nextSealAt(), 110)
    assert.deepEqual((await store.outbox()).map((e) => e.reportId), ['same'])
    assert.equal((await store.counters()).reports_created, 1)
  })
})

describe('openStore sqlite:', () => {
  it('opens a relative path against the working directory, creating directories', async (t) => {
    const dir = tempDir(t)
    const file = join(dir, 'data', 'x.db')
    const rel = relative(process.cwd(), file)
    assert.ok(!rel.startsWith('/'))
    const store = await openStore(`sqlite:${rel}`, POLICY)
    t.after(() => store.close())
    assert.ok(store instanceof SqliteStore)
    assert.equal(store.path, file)
    assert.ok(existsSync(file))
  })

  it('opens an absolute path', async (t) => {
    const file = join(tempDir(t), 'abs.db')
    const store = await openStore(`sqlite:${file}`, POLICY)
    t.after(() => store.close())
    assert.equal(store.kind, 'sqlite')
    assert.ok(existsSync(file))
  })

  it('parses the accepted forms', () => {
    assert.deepEqual(parseStoreUrl('memory:'), { kind: 'memory' })
    assert.deepEqual(parseStoreUrl('sqlite:./data/x.db'), { kind: 'sqlite', path: './data/x.db' })
    assert.deepEqual(parseStoreUrl('sqlite:/abs/x.db'), { kind: 'sqlite', path: '/abs/x.db' })
    assert.deepEqual(parseStoreUrl('sqlite:data.db'), { kind: 'sqlite', path: 'data.db' })
  })

  it('rejects other forms with SM_ERR_STORE_URL and never echoes credentials', async () => {
    const cases: Array<[string, RegExp]> = [
      ['sqlite:', /needs a file path/],
      ['sqlite:///abs/x.db', /without "\/\/"/],
      ['postgres://u:hunter2@db/x', /scheme "postgres:" names no store/],
      ['memory', /without a scheme/],
      ['', /without a scheme/]
    ]
    for (const [url, message] of cases) {
      await assert.rejects(openStore(url, POLICY), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'SM_ERR_STORE_URL', url)
        assert.match(err.message, message, url)
        assert.doesNotMatch(err.message, /hunter2/, url)
        return true
      })
    }
  })
})
