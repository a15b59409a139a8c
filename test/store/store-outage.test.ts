import assert from 'node:assert/strict'
import diagnosticsChannel from 'node:diagnostics_channel'
import { describe, it } from 'node:test'
import type { UsageStore } from '../../src/meter/index.ts'
import { makeCollector } from '../helpers/collector-fixture.ts'

/** Make every store call fail while `down()` is true, as a Redis outage does. */
function outage (store: UsageStore, down: () => boolean): void {
  const target = store as unknown as Record<string, unknown>
  for (const name of ['flush', 'expire', 'seal', 'nextSealAt', 'outboxStats', 'counters', 'summary', 'outboxHead']) {
    const real = target[name] as (...args: unknown[]) => Promise<unknown>
    target[name] = async (...args: unknown[]) => {
      if (down()) throw new Error('redis store flush failed: Connection is closed.')
      return await real.apply(store, args)
    }
  }
}

describe('while the store is unavailable', () => {
  it('usage waits in memory, bounded by memoryMaxUids; new uids past the cap are dropped and counted', async (t) => {
    let down = true
    const { collector, store } = makeCollector({ minBytes: 0, memoryMaxUids: 3, flushMaxUids: 1000 })
    outage(store, () => down)
    const dropped: unknown[] = []
    const onDrop = (event: unknown): void => { dropped.push(event) }
    diagnosticsChannel.subscribe('streammeter:drop', onDrop)
    t.after(() => diagnosticsChannel.unsubscribe('streammeter:drop', onDrop))

    collector.record({ uid: 'a', bytes: 100, fileType: 'ts' })
    await assert.rejects(collector.flush(), /Connection is closed/) // a..: held as a batch
    for (const uid of ['b', 'c', 'd']) collector.record({ uid, bytes: 10, fileType: 'ts' })
    collector.record({ uid: 'e', bytes: 7, fileType: 'ts' }) // the map holds b, c, d: e is dropped
    collector.record({ uid: 'b', bytes: 5, fileType: 'ts' }) // a known uid still counts
    collector.record({ uid: 'e', bytes: 7, fileType: 'ts' })

    const during = await collector.status()
    assert.equal(during.current_state.store_available, false)
    assert.match(during.current_state.store_error ?? '', /Connection is closed/)
    assert.equal(during.statistics.events_dropped, 2)
    assert.equal(during.statistics.bytes_dropped, 14)
    assert.equal(during.current_state.unflushed_uids, 4) // the held batch (a) and the map (b, c, d)
    assert.equal(during.current_traffic_summary.unflushed_bytes, 135)
    assert.equal(dropped.length, 2)

    down = false
    await collector.flush()
    const records = new Map((await store.records()).map((r) => [r.uid, r.bytes]))
    assert.deepEqual(Object.fromEntries(records), { a: 100, b: 15, c: 10, d: 10 })
    const after = await collector.status()
    assert.equal(after.current_state.store_available, true)
    assert.equal(after.current_state.store_error, null)
    assert.equal(after.current_traffic_summary.unflushed_bytes, 0)
    assert.equal(after.statistics.bytes_recorded, 135, 'recorded excludes the dropped bytes')

    collector.record({ uid: 'e', bytes: 7, fileType: 'ts' }) // room again
    await collector.flush()
    assert.equal((await store.records()).find((r) => r.uid === 'e')?.bytes, 7)
  })

  it('status() shows the last shared figures it could read, with this instance\'s own', async () => {
    let down = false
    const { collector, store } = makeCollector({ minBytes: 50 })
    outage(store, () => down)
    collector.record({ uid: 'a', bytes: 60, fileType: 'ts' })
    await collector.flush()
    const before = await collector.status()
    assert.equal(before.current_state.qualified_uids, 1)
    down = true
    collector.record({ uid: 'b', bytes: 5, fileType: 'ts' })
    const during = await collector.status()
    assert.equal(during.current_state.store_available, false)
    assert.equal(during.current_state.qualified_uids, 1, 'as last read')
    assert.equal(during.statistics.bytes_recorded, 65)
  })

  it('with a healthy store the cap never drops: the early flush comes first', async (t) => {
    const { collector, store } = makeCollector({ minBytes: 0, memoryMaxUids: 5, flushMaxUids: 100 })
    collector.start()
    t.after(() => collector.close({ grace: 1 }))
    for (let i = 0; i < 50; i++) {
      collector.record({ uid: `u${i}`, bytes: 1, fileType: 'ts' })
      await new Promise((resolve) => setImmediate(resolve)) // lets the early flush run
    }
    await collector.flush()
    const status = await collector.status()
    assert.equal(status.statistics.events_dropped, 0)
    assert.equal((await store.records()).length, 50)
  })

  it('close() retries the final flush until the store answers within the grace', async () => {
    let down = true
    const { collector, store } = makeCollector({ minBytes: 0 })
    outage(store, () => down)
    collector.start()
    collector.record({ uid: 'a', bytes: 42, fileType: 'ts' })
    setTimeout(() => { down = false }, 600)
    await collector.close({ grace: 5 })
    assert.equal((await collector.status()).statistics.bytes_after_close, 0)
    const reported = (await store.outbox()).reduce((n, e) => n + e.bytes, 0)
    assert.equal(reported, 42, 'sealed into the final window')
  })

  it('close() counts what it could not flush when the store stays down past the grace', { timeout: 10_000 }, async () => {
    const { collector, store } = makeCollector({ minBytes: 0 })
    outage(store, () => true)
    collector.start()
    collector.record({ uid: 'a', bytes: 42, fileType: 'ts' })
    const started = Date.now()
    // Over the longest pause between retries (2 s): the grace is real time,
    // and one read on the collector's clock, which stands still here, would
    // never run out.
    await collector.close({ grace: 2.1 })
    assert.ok(Date.now() - started < 3000, 'close() keeps to the grace')
    assert.equal((await collector.status()).statistics.bytes_after_close, 42)
  })
})
