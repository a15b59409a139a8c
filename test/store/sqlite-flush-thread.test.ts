/**
 * The SQLite store's flush thread (src/store/sqlite-flush-client.ts,
 * docs/architecture.md#the-sqlite-flush-thread): flushes leave the event
 * loop free, and a thread that fails loses and doubles nothing.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import Database from 'better-sqlite3'
import { StoreError } from '../../src/errors.ts'
import { policyOf, resolveMeterOptions } from '../../src/meter/index.ts'
import type { UsageDelta } from '../../src/meter/index.ts'
import { SqliteFlushThread, parseMarkedFlush } from '../../src/store/sqlite-flush-client.ts'
import { SqliteStore } from '../../src/store/sqlite-store.ts'

const POLICY = policyOf(resolveMeterOptions({}))

function deltas (n: number, from = 0): UsageDelta[] {
  return Array.from({ length: n }, (_, i) => ({
    uid: `u${from + i}`, bytes: 1000, requests: 1, fileTypes: { ts: 1000 }, ips: ['10.0.0.1'], sessions: [], firstSeen: 1, lastSeen: 1
  }))
}

function tempFile (t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'sm-flush-thread-'))
  t.after(() => { rmSync(dir, { recursive: true, force: true }) })
  return join(dir, 'usage.db')
}

/** Event-loop turns (setImmediate) that ran while `work` was pending. */
async function turnsDuring<T> (work: Promise<T>): Promise<{ value: T, turns: number }> {
  let turns = 0
  let done = false
  const tick = (): void => { if (!done) { turns++; setImmediate(tick) } }
  setImmediate(tick)
  try {
    return { value: await work, turns }
  } finally {
    done = true
  }
}

describe('sqlite flush thread', () => {
  it('flushes a file store off the event loop; what it wrote is read at once on the store', async (t) => {
    const store = new SqliteStore(tempFile(t), POLICY, { flushThread: true })
    t.after(() => store.close())
    assert.equal(await store.flushThreadReady(), true)
    const { value, turns } = await turnsDuring(store.flush(deltas(20_000)))
    assert.equal(value.created, 20_000)
    assert.ok(turns > 0, 'the event loop turned while the flush ran')
    assert.equal((await store.records()).length, 20_000)
    assert.equal((await store.counters()).total_recorded_uids, 20_000)
    // In flush order: the second merges into what the first created.
    await Promise.all([store.flush(deltas(10)), store.flush(deltas(10))])
    assert.equal((await store.records()).find((r) => r.uid === 'u0')?.bytes, 3000)
  })

  it('flushes in the caller\'s thread without one, and for :memory:', async (t) => {
    for (const store of [new SqliteStore(tempFile(t), POLICY, { flushThread: false }), new SqliteStore(':memory:', POLICY)]) {
      assert.equal(await store.flushThreadReady(), false)
      const { value, turns } = await turnsDuring(store.flush(deltas(2_000)))
      assert.equal(value.created, 2_000)
      assert.equal(turns, 0)
      await store.close()
    }
  })

  it('close waits for the flushes in flight; a flush after close is refused', async (t) => {
    const store = new SqliteStore(tempFile(t), POLICY, { flushThread: true })
    assert.equal(await store.flushThreadReady(), true)
    const pending = store.flush(deltas(5_000))
    await store.close()
    assert.equal((await pending).created, 5_000)
    await assert.rejects(store.flush(deltas(1)), (err) => err instanceof Error && err.name === 'StoreClosedError')
  })

  it('flushes on its own connection until the thread is ready, so a flush never waits for the thread to start', async (t) => {
    const store = new SqliteStore(tempFile(t), POLICY, { flushThread: true })
    t.after(() => store.close())
    // The first flush starts the thread and runs here; the thread takes the flushes once it is ready.
    const first = await turnsDuring(store.flush(deltas(1_000)))
    assert.equal(first.turns, 0)
    assert.equal(await store.flushThreadReady(), true)
    const later = await turnsDuring(store.flush(deltas(1_000, 1_000)))
    assert.ok(later.turns > 0)
    assert.equal((await store.records()).length, 2_000)
  })

  it('a thread that dies between a commit and its answer: that flush resolves, uncounted twice; the one queued behind it rejects, unwritten', async (t) => {
    const path = tempFile(t)
    const main = new SqliteStore(path, POLICY, { flushThread: false })
    t.after(() => main.close())
    const thread = new SqliteFlushThread(path, POLICY, () => parseMarkedFlush(readMarked(path)),
      new URL('../fixtures/dying-flush-thread.ts', import.meta.url))
    assert.equal(await thread.ready(), true)
    // The fixture commits the first flush and exits before answering it; the second never runs.
    const first = thread.flush(deltas(100), undefined)
    const second = thread.flush(deltas(7, 1000), undefined)
    assert.equal((await first)?.created, 100, 'resolved from what the file recorded')
    await assert.rejects(second as Promise<unknown>, (err) => err instanceof StoreError && /the flush thread stopped/.test(err.message))
    assert.equal(thread.flush(deltas(1), undefined), undefined, 'a failed thread is not used again: the store flushes itself')
    const records = await main.records()
    assert.equal(records.length, 100)
    assert.equal(records.some((r) => r.uid === 'u1000'), false)
    assert.equal((await main.counters()).total_recorded_uids, 100)
  })
})

/** The flush thread's `meta` row, read on a connection of the test's own. */
function readMarked (path: string): unknown {
  const db = new Database(path, { readonly: true })
  try {
    return db.prepare("SELECT value FROM meta WHERE key = 'flush_thread_last'").pluck().get()
  } finally {
    db.close()
  }
}
