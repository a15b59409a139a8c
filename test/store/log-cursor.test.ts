import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { Redis } from 'ioredis'
import { policyOf, resolveMeterOptions } from '../../src/meter/index.ts'
import type { UsageDelta, UsageStore } from '../../src/meter/index.ts'
import { MemoryStore, openStore } from '../../src/store/index.ts'
import { RedisStore } from '../../src/store/redis-store.ts'
import { SCRIPTS } from '../../src/store/redis-scripts.ts'
import { REDIS_URL, cleanupPrefix, redisOrSkip, uniquePrefix } from '../helpers/redis.ts'

const policy = policyOf(resolveMeterOptions({ minBytes: 0 }))
const T0 = 1_800_000_000_000

function delta (uid: string, bytes: number): UsageDelta {
  return { uid, bytes, requests: 1, fileTypes: { ts: bytes }, ips: ['10.0.0.1'], sessions: [], firstSeen: T0, lastSeen: T0 }
}

/** The log position a flush commits goes in with its deltas (the nginx engine's exactly-once). */
async function commitsWithTheDeltas (store: UsageStore): Promise<void> {
  assert.deepEqual(await store.logCursor('access'), { position: 0 }, 'nothing committed yet')
  await store.flush([delta('a', 100)], 'b1', { key: 'access', position: 4096 })
  assert.deepEqual(await store.logCursor('access'), { position: 4096 })
  // Lines that metered nothing still move the position.
  await store.flush([], 'b2', { key: 'access', position: 5000 })
  assert.deepEqual(await store.logCursor('access'), { position: 5000 })
  // A flush without a cursor leaves it alone; other logs are apart.
  await store.flush([delta('a', 1)], 'b3')
  assert.deepEqual(await store.logCursor('access'), { position: 5000 })
  assert.deepEqual(await store.logCursor('other'), { position: 0 })
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
    assert.deepEqual(await again.logCursor('access'), { position: 5000 })
  })

  it('redis store, and a batch applied in part is named for its replay', async (t) => {
    if (!await redisOrSkip(t)) return
    const prefix = uniquePrefix('log-cursor')
    cleanupPrefix(t, prefix)
    const store = await RedisStore.open(REDIS_URL, policy, { prefix, flushChunkUids: 2 })
    t.after(() => store.close())
    await commitsWithTheDeltas(store)
    // A batch of three chunks whose pipeline was cut after its first chunk:
    // the begin script and chunk 0 ran, chunk 1 and 2 and the commit did not.
    const deltas = [delta('p', 1), delta('q', 2), delta('r', 4), delta('s', 8), delta('u', 16)]
    const id = 'log:access@5000-9000'
    const client = new Redis(REDIS_URL)
    t.after(() => client.quit())
    await client.hset(`{${prefix}}:log-cursor:access`, 'pending_id', id, 'pending_to', 9000)
    const once = await RedisStore.open(REDIS_URL, policy, { prefix, flushChunkUids: 2 })
    await once.flush(deltas.slice(0, 2), id) // chunk 0 of batch `id`, its marker written
    await once.close()
    assert.deepEqual(await store.logCursor('access'), { position: 5000, replayTo: 9000 })
    // The replay: the same deltas, the same id; chunk 0 is skipped by its marker.
    await store.flush(deltas, id, { key: 'access', position: 9000 })
    assert.deepEqual(await store.logCursor('access'), { position: 9000 })
    const bytes = new Map((await store.records()).map((r) => [r.uid, r.bytes]))
    assert.deepEqual(['p', 'q', 'r', 's', 'u'].map((u) => bytes.get(u)), [1, 2, 4, 8, 16])
  })

  it('redis store: the position never moves past a chunk that is not applied', async (t) => {
    if (!await redisOrSkip(t)) return
    const prefix = uniquePrefix('log-cursor-gap')
    cleanupPrefix(t, prefix)
    const store = await RedisStore.open(REDIS_URL, policy, { prefix, flushChunkUids: 2 })
    t.after(() => store.close())
    const client = new Redis(REDIS_URL)
    t.after(() => client.quit())
    // The commit script checks every chunk's marker, whatever ran before it.
    await assert.rejects(client.eval(SCRIPTS.smCursorCommit, 2, `{${prefix}}:log-cursor:access`, `{${prefix}}:flushed:nope:0`, 'nope', 100),
      /not applied/)
    assert.deepEqual(await store.logCursor('access'), { position: 0 })
  })
})
