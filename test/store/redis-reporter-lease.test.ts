import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { TrafficCollector, policyOf, resolveMeterOptions } from '../../src/meter/index.ts'
import type { MeterOptions } from '../../src/meter/index.ts'
import { RedisStore } from '../../src/store/redis-store.ts'
import { KiB, MiB } from '../helpers/collector-fixture.ts'
import { Receiver } from '../helpers/receiver.ts'
import { REDIS_URL, deletePrefix, redisOrSkip, uniquePrefix } from '../helpers/redis.ts'
import { waitFor } from '../helpers/wait.ts'

/** Two instances of one deployment: two collectors, two Redis clients, one prefix. */
async function twoInstances (t: TestContext, options: Partial<MeterOptions>): Promise<Array<{ collector: TrafficCollector, store: RedisStore }>> {
  const prefix = uniquePrefix('lease')
  const instances = await Promise.all(['a', 'b'].map(async (name) => {
    const meter = resolveMeterOptions({ flushInterval: 0.1, reportInterval: 0.6, retryBase: 0.05, retryCap: 0.2, ...options, workerId: name })
    const store = await RedisStore.open(REDIS_URL, policyOf(meter), { prefix })
    return { collector: new TrafficCollector(meter, { store }), store }
  }))
  t.after(async () => {
    for (const { collector, store } of instances) {
      await collector.close({ grace: 0.2 }).catch(() => {})
      await store.close()
    }
    await deletePrefix(prefix) // last: closing collectors still write (final flush, lease release)
  })
  return instances
}

describe('one reporter at a time on a shared Redis store', () => {
  it('600 KiB through each of two instances: reported once, as exactly 1.2 MiB, by one reporter', async (t) => {
    if (!await redisOrSkip(t)) return
    const receiver = await Receiver.start()
    t.after(() => receiver.close())
    const [a, b] = await twoInstances(t, { reportUrl: receiver.url })
    a!.collector.start()
    b!.collector.start()
    a!.collector.record({ uid: 'x', bytes: 600 * KiB, fileType: 'ts', ip: '10.0.0.1' })
    b!.collector.record({ uid: 'x', bytes: 600 * KiB, fileType: 'm3u8', ip: '10.0.0.2' })
    await waitFor(() => receiver.reports.length > 0, 8000, 'a report')
    await new Promise((resolve) => setTimeout(resolve, 700)) // another window: nothing more to send
    assert.deepEqual(Object.fromEntries(receiver.totals()), { x: 1200 * KiB })
    assert.equal(receiver.reports.length, 1)
    const detail = receiver.reports[0]!.traffic_details[0]
    assert.equal(detail.request_count, 2)
    assert.equal(detail.unique_ips, 2)
    assert.deepEqual(detail.file_types, { ts: 600 * KiB, m3u8: 600 * KiB })
    assert.equal([a!, b!].filter((i) => i.collector.isReporter).length, 1, 'exactly one reporter')
  })

  it('the reporter dies in the middle of a delivery: the other takes over and sends the same report_id', async (t) => {
    if (!await redisOrSkip(t)) return
    const receiver = await Receiver.start(['hang'])
    t.after(() => receiver.close())
    const instances = await twoInstances(t, { reportUrl: receiver.url, minBytes: 0 })
    for (const i of instances) i.collector.start()
    await waitFor(() => instances.some((i) => i.collector.isReporter), 5000, 'a reporter')
    const reporter = instances.find((i) => i.collector.isReporter)!
    const standby = instances.find((i) => !i.collector.isReporter)!
    standby.collector.record({ uid: 'y', bytes: 2 * MiB, fileType: 'mp4' })
    await receiver.waitForRequests(1, 8000) // the reporter's POST hangs at the receiver
    const first = String(receiver.requests[0]!.headers['idempotency-key'])

    // The reporter "dies": its Redis connection goes, it stops renewing the lease.
    await reporter.store.close()
    await waitFor(() => standby.collector.isReporter, 6000, 'takeover')
    await waitFor(() => receiver.accepted.length > 0, 6000, 'delivery by the new reporter')
    assert.equal(String(receiver.accepted[0]!.headers['idempotency-key']), first, 'the same report id')
    assert.equal(receiver.accepted[0]!.body, receiver.requests[0]!.body, 'the same bytes')
    assert.deepEqual(Object.fromEntries(receiver.totals()), { y: 2 * MiB })
  })
})
