import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { FlushResult, UsageDelta, UsageStore } from '../../src/meter/index.ts'
import { RedisStore } from '../../src/store/redis-store.ts'
import { makeCollector } from '../helpers/collector-fixture.ts'
import { REDIS_URL, cleanupPrefix, redisOrSkip, uniquePrefix } from '../helpers/redis.ts'

/**
 * Make the store's first `lose` flushes lose their answer: applied by the
 * store, then reported as failures (a timeout after the write). Returns the
 * batch ids the store was called with.
 */
function loseAnswers (store: UsageStore, lose: number): Array<string | undefined> {
  const ids: Array<string | undefined> = []
  const flush = store.flush.bind(store)
  store.flush = async (deltas: readonly UsageDelta[], batchId?: string): Promise<FlushResult> => {
    ids.push(batchId)
    const result = await flush(deltas, batchId)
    if (lose-- > 0) throw new Error('answer lost')
    return result
  }
  return ids
}

// Before batch ids, a failed flush merged its deltas back into the map and
// the next flush sent them again mixed with new ones: when the failed flush
// had in fact been applied (Redis answered, the answer was lost), those bytes
// were counted twice.
describe('a flush whose answer was lost is retried with the same batch id and counted once', () => {
  it('on the Redis store', async (t) => {
    if (!await redisOrSkip(t)) return
    const prefix = uniquePrefix('flush-retry')
    cleanupPrefix(t, prefix)
    const store = await RedisStore.open(REDIS_URL, { minBytes: 0, accumulatorTimeoutMs: 600_000, maxIps: 20, maxSessions: 10 }, { prefix })
    t.after(() => store.close())
    const ids = loseAnswers(store, 2)
    const { collector } = makeCollector({ minBytes: 0 }, { store })
    collector.record({ uid: 'u', bytes: 1000, fileType: 'ts' })
    await assert.rejects(collector.flush(), /answer lost/)
    collector.record({ uid: 'u', bytes: 5, fileType: 'ts' }) // waits in the map behind the held batch
    await assert.rejects(collector.flush(), /answer lost/)
    await collector.flush()
    assert.equal(ids[0], ids[1], 'the held batch keeps its id')
    assert.equal(ids[1], ids[2])
    assert.notEqual(ids[3], ids[2], 'newer events go in a new batch')
    const records = await store.records()
    assert.deepEqual(records.map((r) => [r.uid, r.bytes, r.requests]), [['u', 1005, 2]])
    assert.equal((await collector.status()).statistics.flush_failures, 2)
  })

  it('on the memory store (failures before the write): nothing lost', async () => {
    const { collector, store } = makeCollector({ minBytes: 0 })
    const realFlush = store.flush.bind(store)
    let fail = 1
    store.flush = async (deltas, batchId) => {
      if (fail-- > 0) throw new Error('store down')
      return await realFlush(deltas, batchId)
    }
    collector.record({ uid: 'u', bytes: 10, fileType: 'ts' })
    await assert.rejects(collector.flush(), /store down/)
    let status = await collector.status()
    assert.equal(status.current_state.unflushed_uids, 1)
    assert.equal(status.current_traffic_summary.unflushed_bytes, 10)
    collector.record({ uid: 'u', bytes: 1, fileType: 'ts' })
    await collector.flush()
    assert.deepEqual((await store.records()).map((r) => [r.uid, r.bytes]), [['u', 11]])
    status = await collector.status()
    assert.equal(status.current_traffic_summary.unflushed_bytes, 0)
  })

  it('while the store fails, early flushes wait for the next tick instead of one attempt per event', async (t) => {
    const { collector, store } = makeCollector({ minBytes: 0, flushMaxUids: 2, flushInterval: 60 })
    let calls = 0
    store.flush = async () => {
      calls++
      throw new Error('store down')
    }
    collector.start()
    t.after(() => collector.close({ grace: 0.1 }).catch(() => {}))
    for (let i = 0; i < 100; i++) {
      collector.record({ uid: `u${i}`, bytes: 1, fileType: 'ts' })
      await new Promise((resolve) => setImmediate(resolve))
    }
    assert.equal(calls, 1, 'one early flush, then the held batch waits for the tick')
    const status = await collector.status()
    assert.equal(status.current_traffic_summary.unflushed_bytes, 100)
  })
})
