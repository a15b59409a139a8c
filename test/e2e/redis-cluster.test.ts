/**
 * `STORE_URL=redis+cluster://…` on a Redis Cluster of the test's own (three
 * masters, redis-cli --cluster create): the store contract, one slot per
 * store, and durability waits on the node that owns that slot. Slow: starts
 * several redis-server processes.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Redis } from 'ioredis'
import { StoreNotDurableError } from '../../src/errors.ts'
import type { RenderedReport, UsageDelta, UsagePolicy, UsageRecord, UsageStore } from '../../src/meter/index.ts'
import { openStore } from '../../src/store/index.ts'
import { RedisStore } from '../../src/store/redis-store.ts'
import { redisKeys } from '../../src/store/redis-keys.ts'
import { OwnCluster } from '../helpers/own-cluster.ts'
import { ownRedisSuite } from '../helpers/own-redis.ts'
import { storeContract } from '../store/store-contract.ts'

const POLICY: UsagePolicy = { minBytes: 0, accumulatorTimeoutMs: 60_000, maxIps: 3, maxSessions: 2 }
const T0 = 1_700_000_000_000

describe('redis+cluster:// on a Redis Cluster of three masters', ownRedisSuite, () => {
  let cluster: OwnCluster
  before(async () => { cluster = await OwnCluster.start(3) })
  after(() => cluster?.destroy())

  let n = 0
  const prefixes = new WeakMap<UsageStore, string>()
  storeContract('redis', {
    async create (_t, policy) {
      const prefix = `cluster-contract-${++n}`
      const store = await openStore(cluster.url, policy, { prefix })
      prefixes.set(store, prefix)
      return store
    },
    async reopen (_t, previous) {
      const prefix = prefixes.get(previous)
      assert.ok(prefix)
      const store = await openStore(cluster.url, previous.policy, { prefix })
      prefixes.set(store, prefix)
      return store
    }
  })

  it('keeps every key of a store in the slot of its hash tag, on the one node that owns it', async (t) => {
    const prefix = 'cluster-one-slot'
    const store = await openStore(cluster.url, POLICY, { prefix }) as RedisStore
    t.after(() => store.close())
    assert.equal(store.kind, 'redis')
    assert.equal(await store.leadership('me', 5000), 1)
    await store.seal({ now: T0, intervalMs: 1000, render: render('r') })
    await store.flush(Array.from({ length: 1200 }, (_, i) => delta(`u${i}`, 10 + i))) // three chunks, one pipeline
    const { reports } = await store.seal({ now: T0 + 1000, intervalMs: 1000, render: render('r') })
    assert.equal(reports.length, 1)
    assert.equal((await store.outboxHead())?.reportId, 'r-1')
    await store.outboxFail('r-1', 'HTTP 500', T0 + 1001)
    assert.equal(await store.outboxAck('r-1', T0 + 1002), true)
    await store.flush([delta('late', 5)])
    assert.equal((await store.counters()).total_bytes_reported, 1200 * 10 + (1199 * 1200) / 2)

    const owner = await cluster.ownerOf(redisKeys(prefix).records)
    const where = new Map<number, string[]>()
    for (const node of cluster.nodes) {
      const client = new Redis(node.url)
      t.after(() => client.quit())
      const keys = await client.keys(`{${prefix}}:*`)
      if (keys.length > 0) where.set(node.port, keys)
      for (const key of keys) assert.equal(await client.cluster('KEYSLOT', key), await client.cluster('KEYSLOT', `{${prefix}}`), key)
    }
    assert.deepEqual([...where.keys()], [owner.port], 'one node holds them all')
    assert.ok((where.get(owner.port) ?? []).length >= 8, String(where.get(owner.port)))
  })

  it('waits for a replica of the node that owns the slot: a seal it has not acknowledged is held back', async (t) => {
    const prefix = 'cluster-durable'
    const owner = await cluster.ownerOf(redisKeys(prefix).records)
    const replica = await cluster.addReplica(owner)
    const store = await openStore(cluster.url, POLICY, { prefix }) as RedisStore
    t.after(() => store.close())
    // The owner's AOF fsyncs every write, and it has a replica now.
    assert.deepEqual(await store.checkDurability(), { durable: true, code: 'aof-always+replicas' })
    await store.flush([delta('dave', 300_000)])
    await store.seal({ now: T0, intervalMs: 1000, force: true, render: render('a') })
    assert.equal((await store.outboxHead())?.reportId, 'a-1')
    assert.equal(await store.outboxAck('a-1', T0), true)

    replica.pause(true)
    t.after(() => replica.pause(false))
    await store.flush([delta('erin', 200_000)])
    await store.seal({ now: T0 + 1, intervalMs: 1000, force: true, render: render('b') })
    await assert.rejects(store.outboxHead(), (err) => err instanceof StoreNotDurableError && /no replica acknowledged/.test(err.message))
    assert.deepEqual((await store.outbox()).map((e) => e.reportId), ['b-1'], 'kept in the outbox')
    replica.pause(false)
    assert.equal((await store.outboxHead())?.reportId, 'b-1')
  })
})

function delta (uid: string, bytes: number): UsageDelta {
  return { uid, bytes, requests: 1, fileTypes: { ts: bytes }, ips: [], sessions: [], firstSeen: T0, lastSeen: T0 }
}

/** One report per seal, numbered `${prefix}-1`, `${prefix}-2`… */
function render (prefix: string): (records: readonly UsageRecord[]) => RenderedReport[] {
  let k = 0
  return (records) => [{
    reportId: `${prefix}-${++k}`,
    body: JSON.stringify(records.map((r) => [r.uid, r.bytes])),
    uids: records.length,
    bytes: records.reduce((sum, r) => sum + r.bytes, 0)
  }]
}
