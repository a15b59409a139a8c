import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { StoreError } from '../../src/errors.ts'
import { policyOf, resolveMeterOptions } from '../../src/meter/index.ts'
import type { UsageDelta, UsageStore } from '../../src/meter/index.ts'
import { MemoryStore, openStore } from '../../src/store/index.ts'
import { REDIS_URL, cleanupPrefix, redisOrSkip, uniquePrefix } from '../helpers/redis.ts'

const policy = policyOf(resolveMeterOptions({ minBytes: 0 }))
const T0 = 1_800_000_000_000

function delta (uid: string, bytes: number): UsageDelta {
  return { uid, bytes, requests: 1, fileTypes: { ts: bytes }, ips: ['10.0.0.1'], sessions: [], firstSeen: T0, lastSeen: T0 }
}

/** The log position a flush commits goes in with its deltas (the nginx engine's exactly-once). */
async function commitsWithTheDeltas (store: UsageStore): Promise<void> {
  assert.equal(await store.logCursor('access'), 0, 'nothing committed yet')
  await store.flush([delta('a', 100)], 'b1', { key: 'access', position: 4096 })
  assert.equal(await store.logCursor('access'), 4096)
  // Lines that metered nothing still move the position.
  await store.flush([], 'b2', { key: 'access', position: 5000 })
  assert.equal(await store.logCursor('access'), 5000)
  // A flush without a cursor leaves it alone; other logs are apart.
  await store.flush([delta('a', 1)], 'b3')
  assert.equal(await store.logCursor('access'), 5000)
  assert.equal(await store.logCursor('other'), 0)
  assert.equal((await store.records()).find((r) => r.uid === 'a')?.bytes, 101)
}

describe('log cursors: a log position committed with the usage it produced', () => {
  it('memory store', async () => {
    await commitsWithTheDeltas(new MemoryStore(policy))
  })

  it('sqlite store, and the position survives a reopen', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sm-cursor-'))
    t.after(() => rmSync(dir, { recursive: true, force: true }))
    const url = `sqlite:${join(dir, 'usage.db')}`
    const store = await openStore(url, policy)
    await commitsWithTheDeltas(store)
    await store.close()
    const again = await openStore(url, policy)
    t.after(() => again.close())
    assert.equal(await again.logCursor('access'), 5000)
  })

  it('redis store: refused with a clear error, never half applied', async (t) => {
    if (!await redisOrSkip(t)) return
    const prefix = uniquePrefix('log-cursor')
    cleanupPrefix(t, prefix)
    const store = await openStore(REDIS_URL, policy, { prefix })
    t.after(() => store.close())
    assert.equal(await store.logCursor('access'), 0)
    await assert.rejects(store.flush([delta('a', 100)], 'b1', { key: 'access', position: 4096 }),
      (err: Error) => err instanceof StoreError && /cannot commit a log position/.test(err.message))
    assert.deepEqual(await store.records(), [])
  })
})
