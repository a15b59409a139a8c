import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { Redis } from 'ioredis'
import { StoreError } from '../../src/errors.ts'
import { CLOCK_BACK_SLACK_MS, emptyCounters } from '../../src/meter/index.ts'
import type { RenderedReport, UsageDelta, UsagePolicy, UsageRecord, UsageStore } from '../../src/meter/index.ts'
import { MemoryStore, openStore, parseStoreUrl } from '../../src/store/index.ts'
import { RedisStore } from '../../src/store/redis-store.ts'
import { redisKeys } from '../../src/store/redis-keys.ts'
import { SCRIPTS } from '../../src/store/redis-scripts.ts'
import { REDIS_URL, cleanupPrefix, keysOf, redisOrSkip, redisSuite, uniquePrefix } from '../helpers/redis.ts'
import { storeContract } from './store-contract.ts'

const T0 = 1_700_000_000_000
const POLICY: UsagePolicy = { minBytes: 1000, accumulatorTimeoutMs: 10_000, maxIps: 3, maxSessions: 2 }
const suite = await redisSuite()

/** The prefix of every store this file opened, so that reopen finds the data. */
const prefixes = new WeakMap<UsageStore, string>()

/** A new store on a fresh prefix whose keys are deleted when the test ends. */
async function fresh (t: TestContext, policy: UsagePolicy = POLICY): Promise<RedisStore> {
  assert.ok(await redisOrSkip(t))
  const prefix = uniquePrefix('store')
  cleanupPrefix(t, prefix)
  return open(t, prefix, policy)
}

/** Another store (its own connection) on `prefix`, closed when the test ends. */
async function open (t: TestContext, prefix: string, policy: UsagePolicy = POLICY): Promise<RedisStore> {
  const store = await RedisStore.open(REDIS_URL, policy, { prefix })
  prefixes.set(store, prefix)
  t.after(() => store.close())
  return store
}

/** A raw client for driving scripts directly, closed when the test ends. */
function rawClient (t: TestContext): Redis {
  const client = new Redis(REDIS_URL)
  t.after(() => client.quit())
  return client
}

function delta (uid: string, bytes: number, more: Partial<UsageDelta> = {}): UsageDelta {
  return { uid, bytes, requests: 1, fileTypes: { ts: bytes }, ips: [], sessions: [], firstSeen: T0, lastSeen: T0, ...more }
}

/** One report per seal holding every record, with the uid → bytes it carried in its body. */
function render (prefix = 'r') {
  let n = 0
  return (records: readonly UsageRecord[], sealedAt: number): RenderedReport[] => [{
    reportId: `${prefix}-${++n}`,
    body: JSON.stringify({ sealedAt, traffic: records.map((r) => [r.uid, r.bytes]) }),
    uids: records.length,
    bytes: records.reduce((sum, r) => sum + r.bytes, 0)
  }]
}

function byUid<T extends { uid: string }> (items: readonly T[]): T[] {
  return [...items].sort((a, b) => (a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0))
}

/** Bytes per uid over the outbox bodies written by {@link render}. */
async function reported (store: UsageStore): Promise<Map<string, number>> {
  const out = new Map<string, number>()
  for (const e of await store.outbox()) {
    for (const [uid, bytes] of (JSON.parse(e.body) as { traffic: Array<[string, number]> }).traffic) out.set(uid, (out.get(uid) ?? 0) + bytes)
  }
  return out
}

/** Run the staging script the way RedisStore.seal does, as a sealer that then dies. */
async function stageOnly (client: Redis, prefix: string, now: number, intervalMs: number, token: string): Promise<unknown> {
  const k = redisKeys(prefix)
  return client.eval(SCRIPTS.smStage, 6, k.records, k.qualified, k.byBytes, k.meta, k.stage, k.stageMeta, now, intervalMs, '0', token, CLOCK_BACK_SLACK_MS)
}

describe('redis store', suite, () => {
  storeContract('redis', {
    async create (t, policy) {
      assert.ok(await redisOrSkip(t))
      const prefix = uniquePrefix('contract')
      cleanupPrefix(t, prefix)
      const store = await RedisStore.open(REDIS_URL, policy, { prefix })
      prefixes.set(store, prefix)
      return store
    },
    async reopen (t, previous) {
      const prefix = prefixes.get(previous)
      assert.ok(prefix, 'reopen of a store this factory created')
      const store = await RedisStore.open(REDIS_URL, previous.policy, { prefix })
      prefixes.set(store, prefix)
      return store
    }
  })

  describe('redis specifics', () => {
    it('two instances flushing halves at once apply the threshold to the global sum', async (t) => {
      const one = await fresh(t)
      const two = await open(t, one.prefix)
      const uids = Array.from({ length: 50 }, (_, i) => `u${i}`)
      const results = await Promise.all([
        one.flush(uids.map((uid) => delta(uid, 500, { ips: ['10.0.0.1'] }))),
        two.flush(uids.map((uid) => delta(uid, 500, { ips: ['10.0.0.2'], firstSeen: T0 + 1, lastSeen: T0 + 1 })))
      ])
      // Each uid was created by exactly one instance and crossed the threshold in exactly one flush.
      assert.equal(results[0].created + results[1].created, 50)
      assert.equal(results[0].qualified + results[1].qualified, 50)
      const records = await two.records()
      assert.equal(records.length, 50)
      for (const r of records) {
        assert.equal(r.bytes, 1000, r.uid)
        assert.equal(r.requests, 2, r.uid)
        assert.equal(r.qualified, true, r.uid)
        assert.deepEqual([...r.ips].sort(), ['10.0.0.1', '10.0.0.2'], r.uid)
      }
      assert.deepEqual(await one.summary(0), { qualifiedUids: 50, pendingUids: 0, qualifiedBytes: 50_000, pendingBytes: 0, top: [] })
      assert.equal((await one.counters()).total_recorded_uids, 50)
    })

    it('byte counts above 2^40 stay exact through flush, summary, seal, ack and expiry', async (t) => {
      const store = await fresh(t)
      const big = 2 ** 51 + 7 // three of them still sum below 2^53
      for (let i = 0; i < 3; i++) {
        await store.flush([delta('big', big, { fileTypes: { ts: big - 1, m3u8: 1 }, firstSeen: T0 + i, lastSeen: T0 + i })])
      }
      await store.flush([delta('small', 2 ** 40 + 3, { fileTypes: {} }), delta('late', 999)])
      const total = 3 * big
      assert.ok(Number.isSafeInteger(total) && total > 2 ** 52)
      const [top] = (await store.summary(1)).top
      assert.deepEqual([top?.bytes, top?.fileTypes, top?.lastActivity], [total, { ts: 3 * (big - 1), m3u8: 3 }, T0 + 2])
      const { reports } = await store.seal({ now: T0 + 5, intervalMs: 1000, force: true, render: render() })
      assert.deepEqual(reports.map((r) => r.bytes), [total + 2 ** 40 + 3])
      assert.deepEqual(await reported(store), new Map([['big', total], ['small', 2 ** 40 + 3]]))
      assert.equal((await store.outboxStats()).pendingBytes, total + 2 ** 40 + 3)
      assert.equal(await store.outboxAck('r-1', T0 + 6), true)
      assert.equal((await store.counters()).total_bytes_reported, total + 2 ** 40 + 3)
      // A big pending cycle expires with its exact bytes.
      const pendingPolicy = await fresh(t, { ...POLICY, minBytes: 2 ** 53 - 1 })
      await pendingPolicy.flush([delta('p', 2 ** 52 + 1), delta('p', 2 ** 52 - 3)])
      assert.deepEqual((await pendingPolicy.expire(T0 + 10_001)).discarded, [{ uid: 'p', bytes: 2 ** 53 - 2, startTime: T0 }])
      assert.equal((await pendingPolicy.counters()).bytes_discarded, 2 ** 53 - 2)
    })

    it('IPv6 addresses, unicode and JSON-hostile uids survive every path', async (t) => {
      const store = await fresh(t)
      const uids = ['ü-ß-用户', '😀', 'a:b{c}*?[x]', 'quote " back \\ slash / tab\t', '42', '']
      const ips = ['2001:db8::1', '::ffff:10.0.0.1', 'fe80::1%eth0']
      await store.flush(uids.map((uid, i) => delta(uid, 2000 + i, { ips, sessions: ['sé', '🎬'], fileTypes: { 'ts/ü': 2000 + i } })))
      await store.flush([delta('pending ü', 5, { ips: ['2001:db8::2'] })])
      const expected = (uid: string, i: number): UsageRecord => ({
        uid, bytes: 2000 + i, requests: 1, fileTypes: { 'ts/ü': 2000 + i }, ips, sessions: ['sé', '🎬'], startTime: T0, lastActivity: T0, qualified: true
      })
      const records = byUid(await store.records())
      assert.deepEqual(records.filter((r) => r.qualified), byUid(uids.map(expected)))
      assert.deepEqual(records.find((r) => !r.qualified)?.ips, ['2001:db8::2'])
      assert.deepEqual((await store.summary(2)).top.map((r) => r.uid), ['', '42'])
      const { reports } = await store.seal({ now: T0, intervalMs: 1000, force: true, render: render() })
      assert.deepEqual(byUid([...(await reported(store)).keys()].map((uid) => ({ uid }))), byUid(uids.map((uid) => ({ uid }))))
      assert.equal(reports[0]?.uids, uids.length)
      assert.deepEqual((await store.expire(T0 + 10_001)).discarded, [{ uid: 'pending ü', bytes: 5, startTime: T0 }])
    })

    it('a seal interrupted after staging is completed by the next seal, with no uid lost or repeated', async (t) => {
      const prefix = (await fresh(t)).prefix
      const first = await open(t, prefix)
      await first.seal({ now: T0, intervalMs: 60_000, render: render() }) // schedules T0 + 60 s
      await first.flush([delta('a', 3000), delta('b', 2000), delta('c', 10)])

      // A sealer takes the window and dies before rendering.
      const staged = await stageOnly(rawClient(t), prefix, T0 + 60_000, 60_000, 'dead-sealer') as [string, string, string, string[]]
      assert.deepEqual(staged.slice(0, 3), ['staged', String(T0 + 60_000), String(T0 + 120_000)])
      await first.close()

      // Meanwhile another instance flushes: 'a' starts a new cycle next to its staged one.
      const second = await open(t, prefix)
      await second.flush([delta('a', 400, { firstSeen: T0 + 60_001, lastSeen: T0 + 60_001 }), delta('d', 5000, { firstSeen: T0 + 60_002, lastSeen: T0 + 60_002 })])
      // Every byte stays visible: staged records are listed with the live ones.
      const during = await second.records()
      assert.deepEqual(during.map((r) => [r.uid, r.bytes]).sort(), [['a', 3000], ['a', 400], ['b', 2000], ['c', 10], ['d', 5000]].sort())
      assert.deepEqual(await second.outbox(), [])
      assert.deepEqual(await second.summary(0), { qualifiedUids: 1, pendingUids: 2, qualifiedBytes: 5000, pendingBytes: 410, top: [] })

      // The next seal, though not due, completes the staged window at its own time and takes nothing new.
      const recovered = await second.seal({ now: T0 + 61_000, intervalMs: 60_000, render: render('recovered') })
      assert.equal(recovered.sealed, true)
      assert.equal(recovered.nextSealAt, T0 + 120_000)
      assert.deepEqual(recovered.reports.map((r) => [r.reportId, r.createdAt, r.uids, r.bytes]), [['recovered-1', T0 + 60_000, 2, 5000]])
      assert.deepEqual(await reported(second), new Map([['a', 3000], ['b', 2000]]))
      assert.deepEqual(byUid(await second.records()).map((r) => [r.uid, r.bytes]), [['a', 400], ['c', 10], ['d', 5000]])
      assert.deepEqual(await second.seal({ now: T0 + 61_000, intervalMs: 60_000, render: render('again') }), { sealed: false, reports: [], nextSealAt: T0 + 120_000 })

      // The dead sealer's commit, should it ever arrive, is fenced off.
      const k = redisKeys(prefix)
      const late = await rawClient(t).eval(SCRIPTS.smCommit, 7, k.stage, k.stageMeta, k.outbox, k.seq, k.meta, k.counters, `${k.reportPrefix}ghost`,
        'dead-sealer', 'ghost', '{}', 2, 5000)
      assert.deepEqual(late, ['fenced'])
      assert.equal((await second.outbox()).length, 1)
      assert.deepEqual(await second.counters(), {
        ...emptyCounters(), total_recorded_uids: 5, reports_created: 1, windows_sealed: 1
      })
    })

    it('a recovered stage whose render throws goes back, merged with what was flushed meanwhile', async (t) => {
      const store = await fresh(t)
      const memory = new MemoryStore(POLICY) // the same traffic without the interrupted seal
      const flushBoth = async (deltas: UsageDelta[]): Promise<void> => {
        await store.flush(deltas)
        await memory.flush(deltas)
      }
      await store.seal({ now: T0, intervalMs: 60_000, render: render() })
      await memory.seal({ now: T0, intervalMs: 60_000, render: render() })
      await flushBoth([delta('a', 3000, { ips: ['ip1', 'ip2'], sessions: ['s1'] }), delta('b', 10)])
      await stageOnly(rawClient(t), store.prefix, T0 + 60_000, 60_000, 'dead-sealer')
      await flushBoth([delta('a', 400, { ips: ['ip3', 'ip4'], sessions: ['s2', 's3'], fileTypes: { m3u8: 400 }, firstSeen: T0 + 60_001, lastSeen: T0 + 60_009 })])
      const boom = new Error('render failed')
      await assert.rejects(store.seal({ now: T0 + 61_000, intervalMs: 60_000, render: () => { throw boom } }), (err) => err === boom)
      assert.deepEqual(byUid(await store.records()), byUid(await memory.records()))
      assert.deepEqual(await store.summary(5), await memory.summary(5))
      assert.deepEqual(await store.counters(), await memory.counters())
      assert.equal(await store.nextSealAt(), T0 + 60_000)
      // And the window then seals normally.
      const sealed = await store.seal({ now: T0 + 61_000, intervalMs: 60_000, render: render('ok') })
      assert.deepEqual(sealed.reports.map((r) => [r.reportId, r.bytes]), [['ok-1', 3400]])
    })

    it('a resent flush (same batch id) is applied once', async (t) => {
      const store = await fresh(t)
      const k = redisKeys(store.prefix)
      const client = rawClient(t)
      const batch = JSON.stringify([['a', 600, 1, { ts: 600 }, [], [], T0, T0]])
      const send = (): Promise<unknown> => client.eval(SCRIPTS.smFlush, 7, k.records, k.pending, k.qualified, k.byBytes, k.meta, k.counters,
        `${k.flushedPrefix}batch-1`, 1000, 10_000, 3, 2, batch, 60_000)
      const firstReply = await send()
      assert.equal(await send(), firstReply)
      assert.deepEqual((await store.records()).map((r) => r.bytes), [600])
      assert.equal((await store.counters()).total_recorded_uids, 1)
    })

    it('a flush Redis refuses changes nothing and fails with a StoreError whose cause does not carry the batch', async (t) => {
      const store = await fresh(t)
      await store.flush([delta('a', 10)])
      const bad = { ...delta('b', 10), uid: { not: 'a string' } as unknown as string }
      await assert.rejects(store.flush([delta('a', 10, { ips: ['10.9.9.9'] }), bad]), (err) => {
        assert.ok(err instanceof StoreError)
        assert.match(err.message, /^redis store flush failed: /)
        assert.deepEqual((err.cause as { command?: unknown }).command, { name: 'evalsha' })
        assert.doesNotMatch(JSON.stringify(err.cause), /10\.9\.9\.9/)
        return true
      })
      assert.deepEqual((await store.records()).map((r) => [r.uid, r.bytes, r.ips]), [['a', 10, []]])
      assert.equal((await store.counters()).total_recorded_uids, 1)
    })

    it('every key carries the one hash tag {prefix}', async (t) => {
      const store = await fresh(t)
      await store.seal({ now: T0, intervalMs: 1000, render: render() })
      await store.flush([delta('a', 5000), delta('b', 10), delta('c', 20, { firstSeen: T0 - 20_000 })])
      await store.expire(T0 + 1)
      await store.seal({ now: T0 + 1000, intervalMs: 1000, render: render() })
      await store.outboxFail('r-1', 'HTTP 500', T0 + 1001)
      await store.outboxPark('r-1', 'HTTP 400', T0 + 1001, { status: 400 })
      await stageOnly(rawClient(t), store.prefix, T0, 1000, 'x') // a stage with nothing qualified is just a schedule
      await store.flush([delta('d', 5000)])
      await stageOnly(rawClient(t), store.prefix, T0 + 5000, 1000, 'y')

      const client = rawClient(t)
      const keys = await keysOf(store.prefix, client)
      assert.ok(keys.length >= 10, keys.join(', '))
      // Nothing of this store exists outside its tag.
      const stray: string[] = []
      let cursor = '0'
      do {
        const [next, batch] = await client.scan(cursor, 'MATCH', `*${store.prefix}*`, 'COUNT', 1000)
        cursor = next
        stray.push(...batch.filter((key) => !keys.includes(key)))
      } while (cursor !== '0')
      assert.deepEqual(stray, [])
      // Redis Cluster hashes the text between the first "{" and the next "}".
      for (const key of keys) assert.equal(key.slice(key.indexOf('{') + 1, key.indexOf('}')), store.prefix, key)
      assert.ok(keys.every((key) => key.startsWith(`{${store.prefix}}:`)))
    })

    it('a flush of 10,000 uids is merged exactly, in scripts of at most 500 uids (one round-trip: redis-flush-chunks.test.ts)', async (t) => {
      const store = await fresh(t)
      await store.flush([delta('warm-up', 1)]) // loads the script (EVALSHA, then EVAL once on NOSCRIPT)
      const sent: string[] = []
      const original = Redis.prototype.sendCommand
      t.mock.method(Redis.prototype, 'sendCommand', function (this: Redis, ...args: Parameters<Redis['sendCommand']>) {
        sent.push(args[0].name)
        return original.apply(this, args)
      })
      const deltas = Array.from({ length: 10_000 }, (_, i) => delta(`user-${i}`, 500 + (i % 1000), { ips: [`2001:db8::${i.toString(16)}`], sessions: [`s${i}`] }))
      const result = await store.flush(deltas)
      assert.deepEqual(sent, Array(20).fill('evalsha'))
      t.mock.restoreAll()
      assert.deepEqual([result.uids, result.created, result.qualified], [10_000, 10_000, 5000])
      const summary = await store.summary(1)
      assert.equal(summary.qualifiedUids + summary.pendingUids, 10_001)
      assert.equal(summary.qualifiedBytes + summary.pendingBytes, deltas.reduce((sum, d) => sum + d.bytes, 1))
    })
  })

  describe('openStore redis://', () => {
    it('opens a RedisStore under the given prefix, or "streammeter" by default', async (t) => {
      assert.ok(await redisOrSkip(t))
      const prefix = uniquePrefix('open')
      cleanupPrefix(t, prefix)
      const store = await openStore(REDIS_URL, POLICY, { prefix })
      t.after(() => store.close())
      assert.ok(store instanceof RedisStore)
      assert.deepEqual([store.kind, store.prefix, { ...store.policy }], ['redis', prefix, POLICY])
      await store.flush([delta('a', 1)])
      const keys = await keysOf(prefix)
      assert.ok(keys.includes(`{${prefix}}:records`), keys.join(', '))
      assert.ok(keys.every((key) => key.startsWith(`{${prefix}}:`)), keys.join(', '))
      // The default prefix: opened, not written (the shared server's keys are not ours).
      const byDefault = await openStore(REDIS_URL, POLICY)
      t.after(() => byDefault.close())
      assert.equal((byDefault as RedisStore).prefix, 'streammeter')
    })
  })
})

describe('redis store without a server', () => {
  it('parses redis:// and rediss:// and refuses malformed ones without echoing credentials', () => {
    assert.deepEqual(parseStoreUrl('redis://:pw@cache:6379/0'), { kind: 'redis', url: 'redis://:pw@cache:6379/0' })
    assert.deepEqual(parseStoreUrl('rediss://cache'), { kind: 'redis', url: 'rediss://cache' })
    for (const url of ['redis:cache', 'redis://', 'rediss://:hunter2@']) {
      assert.throws(() => parseStoreUrl(url), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'SM_ERR_STORE_URL', url)
        assert.doesNotMatch(err.message, /hunter2/, url)
        return true
      })
    }
  })

  it('a server that cannot be reached is a StoreError with the cause and without the URL', async () => {
    await assert.rejects(RedisStore.open('redis://:hunter2@127.0.0.1:1/0', POLICY, { prefix: 'unused', redis: { retryStrategy: () => null } }), (err) => {
      assert.ok(err instanceof StoreError)
      assert.ok(err.cause instanceof Error)
      assert.doesNotMatch(err.message, /hunter2|redis:\/\//)
      return true
    })
  })

  it('refuses a prefix that would break the hash tag', async () => {
    for (const prefix of ['', 'a{b', 'a}b']) {
      await assert.rejects(RedisStore.open(REDIS_URL, POLICY, { prefix }), (err) => err instanceof StoreError && /prefix/.test(err.message))
    }
  })
})
