/**
 * `STORE_URL=redis+sentinel://…` on a master, a replica and a Sentinel of the
 * test's own: the store contract through the Sentinel, a login on both the
 * master and the Sentinel, and a real failover that must not bill a window
 * twice. Slow: starts several redis-server processes.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { Redis } from 'ioredis'
import type { UsagePolicy, UsageStore } from '../../src/meter/index.ts'
import { openStore } from '../../src/store/index.ts'
import type { RedisStore } from '../../src/store/redis-store.ts'
import { redisKeys } from '../../src/store/redis-keys.ts'
import { assertBilledOnce, healthOf, sorted, startBillingRig } from '../helpers/billing-rig.ts'
import { OwnRedis, ownRedisSuite } from '../helpers/own-redis.ts'
import type { OwnRedisOptions } from '../helpers/own-redis.ts'
import { OwnSentinel } from '../helpers/own-sentinel.ts'
import { stopGracefully, trafficOf } from '../helpers/serve-fleet.ts'
import { TcpLink } from '../helpers/tcp-link.ts'
import { waitFor } from '../helpers/wait.ts'
import { storeContract } from '../store/store-contract.ts'

const POLICY: UsagePolicy = { minBytes: 0, accumulatorTimeoutMs: 60_000, maxIps: 3, maxSessions: 2 }
const T0 = 1_700_000_000_000
/** No delay before a replica's first sync (5 s by default). */
const QUICK_SYNC = ['--repl-diskless-sync-delay', '0']

/** A master and a replica of it (replicating through `via`, a relay's port, when given), both cleaned up after. */
async function pair (t: TestContext | undefined, masterArgs: string[], replicaArgs: string[] = [], via?: (masterPort: number) => Promise<number>): Promise<[OwnRedis, OwnRedis]> {
  const master = await own(t, { args: [...QUICK_SYNC, ...masterArgs] })
  const port = via === undefined ? master.port : await via(master.port)
  const replica = await own(t, { args: ['--replicaof', '127.0.0.1', String(port), ...replicaArgs] })
  const client = new Redis(master.url)
  try {
    await waitFor(async () => /slave0:.*state=online/.test(await client.info('replication')), 10_000, 'replica online')
  } finally {
    client.disconnect()
  }
  return [master, replica]
}

const cleanups: Array<() => Promise<void>> = []

async function own (t: TestContext | undefined, options: OwnRedisOptions): Promise<OwnRedis> {
  const redis = await OwnRedis.start(options)
  if (t === undefined) cleanups.push(() => redis.destroy())
  else t.after(() => redis.destroy())
  return redis
}

describe('redis+sentinel:// through a Sentinel of the test\'s own', ownRedisSuite, () => {
  let sentinel: OwnSentinel
  before(async () => {
    const [master] = await pair(undefined, [])
    sentinel = await OwnSentinel.start({ masterPort: master.port })
    cleanups.push(() => sentinel.destroy())
  })
  after(async () => { for (const c of cleanups.splice(0).reverse()) await c() })

  let n = 0
  const prefixes = new WeakMap<UsageStore, string>()
  const url = (): string => `redis+sentinel://127.0.0.1:${sentinel.port}/mymaster`
  storeContract('redis', {
    async create (_t, policy) {
      const prefix = `sentinel-contract-${++n}`
      const store = await openStore(url(), policy, { prefix })
      prefixes.set(store, prefix)
      return store
    },
    async reopen (_t, previous) {
      const prefix = prefixes.get(previous)
      assert.ok(prefix)
      const store = await openStore(url(), previous.policy, { prefix })
      prefixes.set(store, prefix)
      return store
    }
  })

  it('reaches the master it names and confirms seals with its replica (WAIT on the master)', async (t) => {
    const store = await openStore(url(), POLICY, { prefix: 'sentinel-durable' }) as RedisStore
    t.after(() => store.close())
    assert.deepEqual(store.durability, { durable: true, code: 'aof-always+replicas' })
  })

  it('logs in to the master and to a Sentinel that both have a password, on the database the URL names', async (t) => {
    const [master] = await pair(t, ['--requirepass', 'master-pw', '--masterauth', 'master-pw'], ['--requirepass', 'master-pw', '--masterauth', 'master-pw'])
    const guarded = await OwnSentinel.start({ masterPort: master.port, name: 'guarded', password: 'sentinel-pw', masterPassword: 'master-pw' })
    t.after(() => guarded.destroy())
    const store = await openStore(`redis+sentinel://:master-pw@127.0.0.1:${guarded.port}/guarded/3?sentinelPassword=sentinel-pw`, POLICY, { prefix: 'guarded' })
    t.after(() => store.close())
    await store.flush([{ uid: 'dave', bytes: 300_000, requests: 1, fileTypes: { ts: 300_000 }, ips: [], sessions: [], firstSeen: T0, lastSeen: T0 }])
    const client = new Redis(master.url, { db: 3 })
    t.after(() => client.quit())
    assert.equal(await client.hexists(redisKeys('guarded').records, 'dave'), 1)
  })
})

describe('a Sentinel failover to a replica that missed the seal', ownRedisSuite, () => {
  it('does not bill the window twice: the seal no replica acknowledged was never delivered', async (t) => {
    // The replica replicates through a relay the test can hold and cut: the
    // seal reaches the master but never the replica, as in a partition.
    let link: TcpLink | undefined
    const [master, replica] = await pair(t, ['--appendonly', 'no'], ['--appendonly', 'no'], async (port) => {
      link = await TcpLink.start(port)
      t.after(() => link?.close())
      return link.port
    })
    const sentinel = await OwnSentinel.start({ masterPort: master.port })
    t.after(() => sentinel.destroy())
    await waitFor(async () => await sentinel.replicas() === 1, 10_000, 'the Sentinel knows the replica')
    const { receiver, server, got, fetch } = await startBillingRig(t, `redis+sentinel://127.0.0.1:${sentinel.port}/mymaster`)
    const onReplica = new Redis(replica.url)
    t.after(() => onReplica.quit())
    const k = redisKeys('billing')

    await fetch('dave', 'seg.ts')
    await waitFor(() => receiver.totals().get('dave') === 300_000, 8000, 'dave delivered')
    await fetch('erin', 'seg.ts')
    // erin's usage is on the replica, dave's report is acknowledged there too.
    await waitFor(async () => await onReplica.hexists(k.records, 'erin') === 1 && await onReplica.llen(k.outbox) === 0, 8000, 'replicated')

    link!.hold()
    await waitFor(async () => (await trafficOf(server)).outbox.pending === 1 || receiver.totals().has('erin'), 8000, 'erin sealed')
    await new Promise((resolve) => setTimeout(resolve, 2000))
    assert.equal(receiver.totals().get('erin'), undefined, 'delivered before the replica had the seal')

    await master.kill()
    link!.cut()
    await waitFor(async () => await sentinel.masterPort() === replica.port, 15_000, 'failover to the replica')
    // The replica never got the seal: erin's usage is live there, sealed again, delivered once.
    await waitFor(() => receiver.totals().get('erin') === 300_000, 15_000, 'erin delivered after the failover')
    const h = await healthOf(server)
    assert.deepEqual([h.body.store.durable, h.body.store.durability], [false, 'aof-off'], 'the new master has no replica and no AOF')
    assert.equal(await stopGracefully(server), 0, server.output())
    assert.deepEqual(sorted(receiver.totals()), sorted(got))
    assertBilledOnce(receiver)
  })
})
