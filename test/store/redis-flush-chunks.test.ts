import assert from 'node:assert/strict'
import { Socket } from 'node:net'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { Redis } from 'ioredis'
import { StoreError } from '../../src/errors.ts'
import type { FlushResult, UsageDelta, UsagePolicy, UsageRecord, UsageStore } from '../../src/meter/index.ts'
import { MemoryStore } from '../../src/store/index.ts'
import { RedisStore } from '../../src/store/redis-store.ts'
import { FLUSH_CHUNK_UIDS } from '../../src/store/redis-store.ts'
import { FLUSH_MARKER_TTL_MS } from '../../src/store/redis-flush-scripts.ts'
import { redisKeys } from '../../src/store/redis-keys.ts'
import { REDIS_URL, cleanupPrefix, keysOf, redisOrSkip, redisSuite, uniquePrefix } from '../helpers/redis.ts'

// A Redis flush is split into chunks (one Lua script each, all in one
// pipeline) so that a 100,000-uid flush does not block Redis for seconds.
// Each chunk is applied whole and at most once; a batch that failed part-way
// is retried whole with the same id and the chunks already applied are
// skipped by their markers.

const T0 = 1_700_000_000_000
const POLICY: UsagePolicy = { minBytes: 1000, accumulatorTimeoutMs: 10_000, maxIps: 3, maxSessions: 2 }
const suite = await redisSuite()

function delta (uid: string, bytes: number, more: Partial<UsageDelta> = {}): UsageDelta {
  return { uid, bytes, requests: 1, fileTypes: { ts: bytes }, ips: [], sessions: [], firstSeen: T0, lastSeen: T0, ...more }
}

/** A store on a fresh prefix (keys deleted when the test ends), flushing `chunk` deltas per script. */
async function fresh (t: TestContext, chunk: number | undefined, policy: UsagePolicy = POLICY): Promise<RedisStore> {
  assert.ok(await redisOrSkip(t))
  const prefix = uniquePrefix('flush-chunks')
  cleanupPrefix(t, prefix)
  return open(t, prefix, chunk, policy)
}

async function open (t: TestContext, prefix: string, chunk: number | undefined, policy: UsagePolicy = POLICY): Promise<RedisStore> {
  const store = await RedisStore.open(REDIS_URL, policy, { prefix, flushChunkUids: chunk })
  t.after(() => store.close())
  return store
}

/**
 * A store on a fresh prefix (keys deleted when the test ends) over a client
 * the test controls (to make replies time out), closed when the test ends.
 */
async function withClient (t: TestContext, chunk: number): Promise<{ store: RedisStore, client: Redis, prefix: string }> {
  assert.ok(await redisOrSkip(t))
  const prefix = uniquePrefix('flush-chunks')
  cleanupPrefix(t, prefix)
  const client = new Redis(REDIS_URL, { enableOfflineQueue: false, autoResendUnfulfilledCommands: false, commandTimeout: 10_000, lazyConnect: true })
  client.on('error', () => {})
  await client.connect()
  const store = new RedisStore(client, POLICY, { prefix, flushChunkUids: chunk })
  t.after(() => store.close())
  return { store, client, prefix }
}

function byUid (records: readonly UsageRecord[]): UsageRecord[] {
  return [...records].sort((a, b) => (a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0))
}

/** What a store holds, in a form two stores can be compared by. */
async function state (store: UsageStore): Promise<unknown> {
  return { records: byUid(await store.records()), summary: await store.summary(3), counters: await store.counters() }
}

/**
 * 22 deltas that exercise every merge rule across chunk boundaries (with 4
 * per chunk: 6 chunks). `stale` already has a sub-threshold cycle from
 * before; `split` has a delta in chunks 0, 2 and 4 and crosses the threshold
 * only with the last.
 */
function mixedBatch (): UsageDelta[] {
  const out: UsageDelta[] = []
  for (let i = 0; i < 16; i++) {
    out.push(delta(`u${i}`, 200 * (i + 1), {
      requests: 1 + (i % 3),
      fileTypes: i % 2 === 0 ? { ts: 200 * (i + 1) } : { ts: 100 * (i + 1), m3u8: 100 * (i + 1) },
      ips: [`10.0.0.${i}`],
      sessions: [`s${i}`],
      firstSeen: T0 + i,
      lastSeen: T0 + 10 + i
    }))
  }
  // `split` in chunks 0, 2 and 4 (positions 1, 9, 17): 400 + 400 + 400 crosses 1000 in the third.
  out.splice(1, 0, delta('split', 400, { ips: ['10.1.0.1', '10.1.0.2'], sessions: ['a'], firstSeen: T0 + 100, lastSeen: T0 + 101 }))
  out.splice(9, 0, delta('split', 400, { ips: ['10.1.0.3', '10.1.0.4'], sessions: ['b', 'c'], fileTypes: { m4s: 400 }, firstSeen: T0 + 50, lastSeen: T0 + 102 }))
  out.splice(17, 0, delta('split', 400, { ips: ['10.1.0.1'], sessions: ['d'], firstSeen: T0 + 103, lastSeen: T0 + 104 }))
  // `stale`'s stored cycle began at T0 - 20 s: more than the timeout before this delta.
  out.push(delta('stale', 50, { firstSeen: T0 + 5, lastSeen: T0 + 6 }))
  out.push(delta('u0', 1, { fileTypes: { key: 1 }, ips: ['10.0.0.99'], firstSeen: T0 + 200, lastSeen: T0 + 200 }))
  out.push(delta('tiny', 3, { fileTypes: { vtt: 3 } }))
  return out
}

const STALE = delta('stale', 70, { firstSeen: T0 - 20_000, lastSeen: T0 - 19_000 })

describe('chunked redis flush', suite, () => {
  it('a batch of several chunks merges exactly as one step would', async (t) => {
    const chunked = await fresh(t, 4)
    const whole = await fresh(t, 1000)
    const memory = new MemoryStore(POLICY)
    const batch = mixedBatch()
    assert.equal(Math.ceil(batch.length / 4), 6)
    const results: FlushResult[] = []
    for (const store of [chunked, whole, memory]) {
      await store.flush([STALE], 'before')
      results.push(await store.flush(batch, 'batch'))
    }
    const [fromChunks, fromWhole, fromMemory] = results
    assert.deepEqual(fromChunks, fromMemory)
    assert.deepEqual(fromWhole, fromMemory)
    assert.deepEqual([fromChunks?.uids, fromChunks?.created, fromChunks?.qualified], [22, 19, 13])
    assert.deepEqual(fromChunks?.discarded, [{ uid: 'stale', bytes: 70, startTime: T0 - 20_000 }])

    const expected = await state(memory)
    assert.deepEqual(await state(chunked), expected)
    assert.deepEqual(await state(whole), expected)
    // The values a report would carry, spelled out for the uid split over three chunks.
    const split = (await chunked.records()).find((r) => r.uid === 'split')
    assert.deepEqual(split, {
      uid: 'split',
      bytes: 1200,
      requests: 3,
      fileTypes: { ts: 800, m4s: 400 },
      ips: ['10.1.0.1', '10.1.0.2', '10.1.0.3'],
      sessions: ['a', 'b'],
      startTime: T0 + 50,
      lastActivity: T0 + 104,
      qualified: true
    })
    const u0 = (await chunked.records()).find((r) => r.uid === 'u0')
    assert.deepEqual([u0?.bytes, u0?.requests, u0?.fileTypes, u0?.ips, u0?.qualified], [201, 2, { ts: 200, key: 1 }, ['10.0.0.0', '10.0.0.99'], false])
    const summary = await chunked.summary(0)
    const total = batch.reduce((sum, d) => sum + d.bytes, 0)
    assert.equal(summary.qualifiedBytes + summary.pendingBytes, total)
    assert.equal((await chunked.counters()).bytes_discarded, 70)
  })

  it('10,000 uids go as 20 scripts (the default chunk) in one write to the socket (one round-trip)', async (t) => {
    assert.equal(FLUSH_CHUNK_UIDS, 500)
    const store = await fresh(t, undefined)
    await store.flush([delta('warm-up', 1)]) // the first script on a connection goes as EVAL with its source
    const deltas = Array.from({ length: 10_000 }, (_, i) => delta(`user-${i}`, 500 + (i % 1000), { ips: [`2001:db8::${i.toString(16)}`], sessions: [`s${i}`] }))
    const sent: Array<{ name: string, stream: unknown }> = []
    const sendCommand = Redis.prototype.sendCommand
    t.mock.method(Redis.prototype, 'sendCommand', function (this: Redis, ...args: Parameters<Redis['sendCommand']>) {
      sent.push({ name: args[0].name, stream: args[1] })
      return sendCommand.apply(this, args)
    })
    let writes = 0
    const write = Socket.prototype.write
    t.mock.method(Socket.prototype, 'write', function (this: Socket, ...args: Parameters<Socket['write']>) {
      writes++
      return write.apply(this, args)
    })
    const result = await store.flush(deltas)
    t.mock.restoreAll()
    assert.deepEqual(sent.map((s) => s.name), Array<string>(20).fill('evalsha'))
    assert.equal(new Set(sent.map((s) => s.stream)).size, 1, 'every chunk in one pipeline')
    assert.equal(writes, 1)
    assert.deepEqual([result.uids, result.created, result.qualified], [10_000, 10_000, 5000])
    const summary = await store.summary(0)
    assert.equal(summary.qualifiedUids + summary.pendingUids, 10_001)
    assert.equal(summary.qualifiedBytes + summary.pendingBytes, deltas.reduce((sum, d) => sum + d.bytes, 1))
  })

  it('the same batch id flushed twice counts once and answers the first result', async (t) => {
    const store = await fresh(t, 4)
    await store.flush([STALE])
    const batch = mixedBatch()
    const first = await store.flush(batch, 'twice')
    const after = await state(store)
    const second = await store.flush(batch, 'twice')
    assert.deepEqual(second, first)
    assert.deepEqual(await state(store), after)
    // Through another store (another process after a restart would never retry, but markers are shared).
    const other = await open(t, store.prefix, 4)
    assert.deepEqual(await other.flush(batch, 'twice'), first)
    assert.deepEqual(await state(store), after)
  })

  it('a batch applied in part, then retried whole, counts every byte once', async (t) => {
    const store = await fresh(t, 4)
    const memory = new MemoryStore(POLICY)
    await store.flush([STALE])
    await memory.flush([STALE])
    const batch = mixedBatch()
    // Chunks 0-2 of the batch ran under its id (as when the connection drops after them).
    const partial = await store.flush(batch.slice(0, 12), 'partly')
    assert.equal(partial.created, 11)
    const retried = await store.flush(batch, 'partly')
    const expected = await memory.flush(batch)
    // The chunks already applied answer their first result, so the merged result is the batch's.
    assert.deepEqual(retried, expected)
    assert.deepEqual(await state(store), await state(memory))
  })

  it('a batch whose replies were lost (Redis ran it) is counted once when retried', async (t) => {
    const { store, client } = await withClient(t, 500)
    const memory = new MemoryStore(POLICY)
    await store.flush([delta('warm-up', 1)])
    await memory.flush([delta('warm-up', 1)])
    const deltas = Array.from({ length: 5000 }, (_, i) => delta(`user-${i % 4000}`, 300 + (i % 900), {
      ips: [`10.${i % 7}.0.${i % 200}`], sessions: [`s${i % 3}`], firstSeen: T0 + i, lastSeen: T0 + i
    }))
    // Every reply times out at the client while Redis runs the scripts anyway:
    // the ambiguous failure markers exist for. 10 chunks of 500 uids take far more than 1 ms.
    client.options.commandTimeout = 1
    await assert.rejects(store.flush(deltas, 'lost'), (err) => {
      assert.ok(err instanceof StoreError)
      assert.match(err.message, /^redis store flush failed: Command timed out \(chunk \d+ of 10\)$/)
      return true
    })
    client.options.commandTimeout = 10_000
    // Replies come in order: once PING answers, every chunk has run.
    assert.equal(await client.ping(), 'PONG')
    const applied = await state(store)
    const retried = await store.flush(deltas, 'lost')
    assert.deepEqual(retried, await memory.flush(deltas))
    assert.deepEqual(await state(store), applied)
    assert.deepEqual(await state(store), await state(memory))
  })

  it('markers go once their batch answered whole, never while it may be retried', async (t) => {
    const { store, client, prefix } = await withClient(t, 50)
    const k = redisKeys(prefix)
    const markers = async (): Promise<string[]> => (await keysOf(prefix, client)).filter((key) => key.startsWith(k.flushedPrefix)).sort()
    const names = (id: string, chunks: number): string[] => Array.from({ length: chunks }, (_, i) => `${k.flushedPrefix}${id}:${i}`)
    const batch = (tag: string, n: number): UsageDelta[] => Array.from({ length: n }, (_, i) => delta(`${tag}-${i}`, 10))

    await store.flush(batch('a', 120), 'A')
    assert.deepEqual(await markers(), names('A', 3))
    const ttl = await client.pttl(`${k.flushedPrefix}A:0`)
    assert.ok(ttl > FLUSH_MARKER_TTL_MS - 60_000 && ttl <= FLUSH_MARKER_TTL_MS, String(ttl))

    // B runs but its answers are lost: A's markers go (A answered whole), B's stay.
    const b = batch('b', 5000)
    client.options.commandTimeout = 1
    await assert.rejects(store.flush(b, 'B'), /Command timed out/)
    client.options.commandTimeout = 10_000
    assert.equal(await client.ping(), 'PONG') // every chunk of B has run
    assert.deepEqual(await markers(), names('B', 100).sort())

    // A later batch leaves B's markers alone: B may still be retried.
    await store.flush(batch('c', 60), 'C')
    assert.deepEqual(await markers(), [...names('B', 100), ...names('C', 2)].sort())

    // B's retry finds every chunk applied (and takes C's markers: C answered);
    // then the next batch takes B's.
    const retried = await store.flush(b, 'B')
    assert.deepEqual([retried.uids, retried.created, retried.qualified], [5000, 5000, 0])
    assert.deepEqual(await markers(), names('B', 100).sort())
    await store.flush(batch('d', 1), 'D')
    assert.deepEqual(await markers(), names('D', 1))
    const summary = await store.summary(0)
    assert.deepEqual([summary.pendingUids, summary.pendingBytes], [5181, 51_810])
  })

  it('expiry goes in chunks too, and discards exactly what one step would', async (t) => {
    // 250 sub-threshold uids (starts 1 ms apart) and 3 qualified ones, the
    // oldest first; with 40 candidates per script, expiry takes 7 scripts.
    const chunked = await fresh(t, 40)
    const memory = new MemoryStore(POLICY)
    const old = Array.from({ length: 250 }, (_, i) => delta(`old${i}`, 10 + i, { firstSeen: T0 + i, lastSeen: T0 + i }))
    const big = Array.from({ length: 3 }, (_, i) => delta(`big${i}`, 5000, { firstSeen: T0 - 1, lastSeen: T0 - 1 }))
    const young = delta('young', 5, { firstSeen: T0 + 5000, lastSeen: T0 + 5000 })
    for (const store of [chunked, memory]) await store.flush([...big, ...old, young], 'b')
    const now = T0 + POLICY.accumulatorTimeoutMs + 1000 // old0…old249 expire, young does not
    const [fromChunks, fromMemory] = [await chunked.expire(now), await memory.expire(now)]
    const byUidOf = (r: { discarded: Array<{ uid: string }> }): string[] => r.discarded.map((d) => d.uid).sort()
    assert.equal(fromChunks.discarded.length, 250)
    assert.deepEqual(byUidOf(fromChunks), byUidOf(fromMemory))
    assert.equal(fromChunks.discarded.reduce((sum, d) => sum + d.bytes, 0), old.reduce((sum, d) => sum + d.bytes, 0))
    assert.deepEqual(await state(chunked), await state(memory))
    assert.deepEqual((await chunked.expire(now)).discarded, [], 'nothing is left to expire')
    const counters = await chunked.counters()
    assert.deepEqual([counters.accumulator_cleanups, counters.bytes_discarded], [250, old.reduce((sum, d) => sum + d.bytes, 0)])
  })

  it('refuses a chunk size that is not a positive integer', async (t) => {
    assert.ok(await redisOrSkip(t))
    for (const flushChunkUids of [0, -1, 1.5, Number.NaN]) {
      await assert.rejects(RedisStore.open(REDIS_URL, POLICY, { prefix: uniquePrefix('unused'), flushChunkUids }), StoreError)
    }
  })
})
