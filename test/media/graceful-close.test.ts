import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Receiver } from '../helpers/receiver.ts'
import { MiB, makeCollector } from '../helpers/collector-fixture.ts'

describe('graceful close', () => {
  it('flushes, seals and delivers; a second close() is a no-op', async (t) => {
    const receiver = await Receiver.start()
    t.after(() => receiver.close())
    const { collector, store } = makeCollector({ reportUrl: receiver.url, flushInterval: 60 })
    collector.start()
    collector.record({ uid: 'a', bytes: 3 * MiB, fileType: 'mp4' })
    collector.record({ uid: 'b', bytes: 10, fileType: 'ts' }) // below the threshold: stays in the store

    const closing = collector.close({ grace: 5 })
    assert.equal(collector.state, 'closing')
    assert.equal(collector.close(), closing, 'a second close() returns the first one')
    await closing
    assert.equal(collector.state, 'closed')
    await collector.close()

    assert.equal(receiver.requests.length, 1)
    assert.deepEqual(Object.fromEntries(receiver.totals()), { a: 3 * MiB })
    assert.equal((await store.outboxStats()).pending, 0)
    assert.deepEqual((await store.records()).map((r) => [r.uid, r.bytes]), [['b', 10]])

    collector.record({ uid: 'late', bytes: 99, fileType: 'ts' })
    assert.equal((await collector.status()).statistics.bytes_after_close, 99)
    assert.throws(() => collector.start(), { code: 'SM_ERR_COLLECTOR_STATE' })
  })

  it('with the endpoint down, close ends within the grace and the report waits in the outbox', async (t) => {
    const receiver = await Receiver.start(['hang'])
    t.after(() => receiver.close())
    const { collector, store } = makeCollector({ reportUrl: receiver.url, reportTimeout: 30 })
    collector.start()
    collector.record({ uid: 'a', bytes: 2 * MiB, fileType: 'ts' })
    const started = Date.now()
    await collector.close({ grace: 0.5 })
    const took = Date.now() - started
    assert.ok(took < 2000, `close took ${took} ms with a 0.5 s grace`)
    const outbox = await store.outbox()
    assert.equal(outbox.length, 1)
    assert.equal(outbox[0]!.bytes, 2 * MiB)
  })

  it('without a report URL, sealed reports wait in the outbox', async () => {
    const { collector, store } = makeCollector({})
    collector.start()
    collector.record({ uid: 'a', bytes: 2 * MiB, fileType: 'ts' })
    await collector.close({ grace: 1 })
    assert.equal((await store.outboxStats()).pending, 1)
    const status = await collector.status()
    assert.equal(status.config.report_url, null)
    assert.equal(status.running, false)
  })
})
