/**
 * What a redis store finds out about its server's durability (docs/report-format.md#durable-seals), on
 * redis-server processes of the test's own, and the plan for each set of facts.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { Redis } from 'ioredis'
import { StoreNotDurableError } from '../../src/errors.ts'
import type { RenderedReport, StoreDurability, UsagePolicy } from '../../src/meter/index.ts'
import { planDurability } from '../../src/store/redis-durability.ts'
import type { DurabilityFacts } from '../../src/store/redis-durability.ts'
import { RedisStore } from '../../src/store/redis-store.ts'
import { OwnRedis, ownRedisSuite } from '../helpers/own-redis.ts'
import type { OwnRedisOptions } from '../helpers/own-redis.ts'
import { waitFor } from '../helpers/wait.ts'

const POLICY: UsagePolicy = { minBytes: 0, accumulatorTimeoutMs: 60_000, maxIps: 3, maxSessions: 2 }
const T0 = 1_700_000_000_000

async function ownRedis (t: TestContext, options: OwnRedisOptions = {}): Promise<OwnRedis> {
  const redis = await OwnRedis.start(options)
  t.after(() => redis.destroy())
  return redis
}

async function openStore (t: TestContext, url: string, seen: StoreDurability[] = []): Promise<RedisStore> {
  const store = await RedisStore.open(url, POLICY, { prefix: 'durability', onDurability: (d) => seen.push(d) })
  t.after(() => store.close())
  return store
}

function client (t: TestContext, url: string): Redis {
  const c = new Redis(url)
  t.after(() => c.quit())
  return c
}

/** Flush `bytes` for `uid` and seal it into one report `id`. */
async function sealOne (store: RedisStore, uid: string, bytes: number, id: string): Promise<void> {
  await store.flush([{ uid, bytes, requests: 1, fileTypes: { ts: bytes }, ips: [], sessions: [], firstSeen: T0, lastSeen: T0 }])
  const render = (): RenderedReport[] => [{ reportId: id, body: JSON.stringify({ uid, bytes }), uids: 1, bytes }]
  const { reports } = await store.seal({ now: T0, intervalMs: 1000, force: true, render })
  assert.deepEqual(reports.map((r) => r.reportId), [id])
}

describe('redis store durability, found out from the server', ownRedisSuite, () => {
  it('follows the AOF settings: always is durable, everysec and off are not, and a change is seen at the next look', async (t) => {
    const redis = await ownRedis(t)
    const seen: StoreDurability[] = []
    const store = await openStore(t, redis.url, seen)
    assert.deepEqual(store.durability, { durable: true, code: 'aof-always' })
    const admin = client(t, redis.url)
    await admin.config('SET', 'appendfsync', 'everysec')
    assert.deepEqual(await store.checkDurability(), { durable: false, code: 'fsync-everysec' })
    await admin.config('SET', 'appendfsync', 'no')
    assert.deepEqual(await store.checkDurability(), { durable: false, code: 'fsync-no' })
    await admin.config('SET', 'appendonly', 'no')
    assert.deepEqual(await store.checkDurability(), { durable: false, code: 'aof-off' })
    // Each change was reported once, in order.
    assert.deepEqual(seen.map((d) => d.code), ['aof-always', 'fsync-everysec', 'fsync-no', 'aof-off'])
    // A seal on a server that is not durable is still delivered: the warning is the remedy.
    await sealOne(store, 'dave', 300_000, 'r-1')
    assert.equal((await store.outboxHead())?.reportId, 'r-1')
  })

  it('a server whose CONFIG is renamed away: the AOF fsync policy is unknown, so not durable (config-hidden)', async (t) => {
    const redis = await ownRedis(t, { args: ['--rename-command', 'CONFIG', ''] })
    const store = await openStore(t, redis.url)
    assert.deepEqual(store.durability, { durable: false, code: 'config-hidden' })
    await sealOne(store, 'dave', 10, 'r-1')
    assert.equal((await store.outboxHead())?.reportId, 'r-1')
  })

  it('with a replica: WAIT after the seal; while no replica acknowledges, the head is held back with SM_ERR_STORE_NOT_DURABLE', async (t) => {
    const master = await ownRedis(t, { args: ['--appendonly', 'no', '--repl-diskless-sync-delay', '0'] })
    const replica = await ownRedis(t, { args: ['--appendonly', 'no', '--replicaof', '127.0.0.1', String(master.port)] })
    await waitFor(async () => /slave0:.*state=online/.test(await client(t, master.url).info('replication')), 10_000, 'replica online')
    const store = await openStore(t, master.url)
    assert.deepEqual(store.durability, { durable: true, code: 'replicas' })

    await sealOne(store, 'dave', 300_000, 'r-1')
    assert.equal((await store.outboxHead())?.reportId, 'r-1', 'acknowledged by the replica: handed out')
    assert.equal(await store.outboxAck('r-1', T0), true)

    replica.pause(true)
    const started = Date.now()
    await sealOne(store, 'erin', 200_000, 'r-2') // the wait after the commit times out; the seal itself succeeds
    const sealMs = Date.now() - started
    assert.ok(sealMs >= 900 && sealMs < 3000, `seal took ${sealMs} ms`)
    const held = store.outboxHead()
    // The wait blocks a connection of its own: flushes and lease renewals go on meanwhile.
    await new Promise((resolve) => setTimeout(resolve, 100))
    const flushStarted = Date.now()
    await store.flush([{ uid: 'frank', bytes: 1, requests: 1, fileTypes: {}, ips: [], sessions: [], firstSeen: T0, lastSeen: T0 }])
    assert.ok(await store.leadership('me', 5000) > 0)
    const flushMs = Date.now() - flushStarted
    assert.ok(flushMs < 500, `a flush during the wait took ${flushMs} ms`)
    await assert.rejects(held, (err) => {
      assert.ok(err instanceof StoreNotDurableError)
      assert.equal(err.code, 'SM_ERR_STORE_NOT_DURABLE')
      assert.match(err.message, /no replica acknowledged/)
      return true
    })
    assert.deepEqual((await store.outbox()).map((e) => e.reportId), ['r-2'], 'still in the outbox')

    replica.pause(false)
    assert.equal((await store.outboxHead())?.reportId, 'r-2')
  })
})

describe('planDurability', () => {
  const facts = (more: Partial<DurabilityFacts>): DurabilityFacts => ({ waitaof: false, wait: true, aof: false, fsync: 'everysec', replicas: 0, ...more })
  const plan = (more: Partial<DurabilityFacts>): [boolean, string, boolean, boolean] => {
    const p = planDurability(facts(more))
    return [p.durable, p.code, p.waitaof, p.wait]
  }

  it('Redis ≥ 7.2 with the AOF on: WAITAOF, whatever appendfsync says', () => {
    assert.deepEqual(plan({ waitaof: true, aof: true, fsync: 'everysec' }), [true, 'waitaof', true, false])
    assert.deepEqual(plan({ waitaof: true, aof: true, fsync: undefined }), [true, 'waitaof', true, false])
    assert.deepEqual(plan({ waitaof: true, aof: true, replicas: 2 }), [true, 'waitaof+replicas', true, true])
    assert.deepEqual(plan({ waitaof: true, aof: false }), [false, 'aof-off', false, false])
  })

  it('an older Redis: the AOF with appendfsync always, or replicas with WAIT', () => {
    assert.deepEqual(plan({ aof: true, fsync: 'always' }), [true, 'aof-always', false, false])
    assert.deepEqual(plan({ aof: true, fsync: 'always', replicas: 1 }), [true, 'aof-always+replicas', false, true])
    assert.deepEqual(plan({ aof: false, replicas: 1 }), [true, 'replicas', false, true])
    assert.deepEqual(plan({ aof: true, fsync: 'everysec' }), [false, 'fsync-everysec', false, false])
    assert.deepEqual(plan({ aof: true, fsync: 'no' }), [false, 'fsync-no', false, false])
    assert.deepEqual(plan({ aof: true, fsync: undefined }), [false, 'config-hidden', false, false])
    assert.deepEqual(plan({ aof: undefined, fsync: undefined }), [false, 'config-hidden', false, false])
    assert.deepEqual(plan({ aof: false, replicas: 1, wait: false }), [false, 'wait-denied', false, false])
  })
})
