/**
 * A report the endpoint refuses for good (a lasting 4xx) used to be retried
 * forever at the head of the outbox, and every later report queued behind
 * it: billing stopped. Now it is parked after TRAFFIC_REPORT_MAX_REJECTIONS
 * refusals and the outbox moves on (docs/report-format.md#refused-reports).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Receiver } from '../helpers/receiver.ts'
import type { ReceivedRequest } from '../helpers/receiver.ts'
import { MiB, makeCollector } from '../helpers/collector-fixture.ts'
import { waitFor } from '../helpers/wait.ts'

const fast = { flushInterval: 0.05, retryBase: 0.01, retryCap: 0.05 }

const keyOf = (r: ReceivedRequest): string => String(r.headers['idempotency-key'])

describe('a refused report is parked and the outbox moves on', () => {
  it('400 forever: parked after TRAFFIC_REPORT_MAX_REJECTIONS attempts, the next window is delivered, and a retry sends the same bytes', async (t) => {
    const receiver = await Receiver.start()
    t.after(() => receiver.close())
    let refuse = 'id-0002' // the first window's report (id-0001 is its window id)
    receiver.fallback = (req) => keyOf(req) === refuse ? 400 : 200
    const { collector, clock, store } = makeCollector({ ...fast, reportUrl: receiver.url, reportMaxRejections: 3 })
    t.after(() => collector.close({ grace: 1 }))
    collector.record({ uid: 'refused-user', bytes: 3 * MiB + 7, fileType: 'ts' })
    await collector.seal({ force: true })
    clock.advance(300_000)
    collector.record({ uid: 'next-user', bytes: 2 * MiB + 1, fileType: 'ts' })
    await collector.seal({ force: true })
    assert.deepEqual((await store.outbox()).map((e) => e.reportId), ['id-0002', 'id-0004'])

    collector.start()
    await waitFor(async () => (await collector.status()).outbox.pending === 0, 5000, 'the next report delivered')
    const refused = receiver.requests.filter((r) => keyOf(r) === 'id-0002')
    assert.deepEqual(refused.map((r) => r.status), [400, 400, 400])
    assert.deepEqual(receiver.accepted.map(keyOf), ['id-0004'])
    assert.deepEqual(receiver.totals(), new Map([['next-user', 2 * MiB + 1]]))

    // Counted and shown.
    const status = await collector.status()
    assert.equal(status.outbox.parked, 1)
    assert.equal(status.outbox.parked_bytes, 3 * MiB + 7)
    assert.equal(status.statistics.reports_parked, 1)
    assert.equal(status.statistics.reports_failed, 3)
    assert.equal(status.statistics.total_reports_sent, 1)
    const [parked] = await store.outboxList()
    assert.equal(parked?.reportId, 'id-0002')
    assert.deepEqual([parked?.attempts, parked?.rejections, parked?.lastStatus, parked?.lastError, typeof parked?.parkedAt],
      [3, 3, 400, 'report endpoint answered HTTP 400', 'number'])
    // Nothing is sent for a parked report.
    const before = receiver.requests.length
    await new Promise((resolve) => setTimeout(resolve, 200))
    assert.equal(receiver.requests.length, before)

    // The receiver is fixed; the operator puts the report back: same id, same bytes, once.
    refuse = ''
    assert.deepEqual(await store.outboxRetry('id-0002'), ['id-0002'])
    // The receiver's answer comes before the sender's acknowledgement in the store: wait for both.
    await waitFor(async () => {
      const { outbox } = await collector.status()
      return outbox.parked === 0 && outbox.pending === 0 && receiver.accepted.length === 2
    }, 5000, 'the parked report delivered')
    const delivered = receiver.accepted.find((r) => keyOf(r) === 'id-0002')
    assert.equal(delivered?.body, refused[0]?.body)
    assert.deepEqual(receiver.totals(), new Map([['refused-user', 3 * MiB + 7], ['next-user', 2 * MiB + 1]]))
    assert.equal((await collector.status()).outbox.pending, 0)
  })

  it('408, 425, 429 and 5xx are retried, never parked, however many', async (t) => {
    const receiver = await Receiver.start([429, 408, 425, 503, 500, 502, 429])
    t.after(() => receiver.close())
    const { collector } = makeCollector({ ...fast, reportUrl: receiver.url, reportMaxRejections: 1 })
    t.after(() => collector.close({ grace: 1 }))
    collector.record({ uid: 'u', bytes: 2 * MiB, fileType: 'ts' })
    await collector.seal({ force: true })
    collector.start()
    await waitFor(async () => (await collector.status()).outbox.pending === 0, 5000, 'delivered')
    assert.deepEqual(receiver.requests.map((r) => r.status), [429, 408, 425, 503, 500, 502, 429, 200])
    assert.equal(new Set(receiver.requests.map(keyOf)).size, 1)
    const status = await collector.status()
    assert.deepEqual([status.statistics.reports_parked, status.outbox.parked, status.statistics.total_reports_sent], [0, 0, 1])
  })

  it('refusals count only lasting 4xx: 5xx in between do not bring parking closer', async (t) => {
    const receiver = await Receiver.start([400, 500, 503, 422])
    t.after(() => receiver.close())
    const { collector, store } = makeCollector({ ...fast, reportUrl: receiver.url, reportMaxRejections: 3 })
    t.after(() => collector.close({ grace: 1 }))
    collector.record({ uid: 'u', bytes: 2 * MiB, fileType: 'ts' })
    await collector.seal({ force: true })
    for (let i = 0; i < 4; i++) assert.equal((await collector.deliverPending()).failed, true)
    const [entry] = await store.outboxList()
    assert.deepEqual([entry?.attempts, entry?.rejections, entry?.lastStatus, entry?.parkedAt], [4, 2, 422, undefined])
    // The third refusal parks it.
    receiver.plan = [403]
    assert.deepEqual(await collector.deliverPending(), { delivered: 0, failed: false })
    const [parked] = await store.outboxList()
    assert.deepEqual([parked?.rejections, parked?.lastStatus, typeof parked?.parkedAt], [3, 403, 'number'])
  })

  it('a graceful stop delivers what is behind a refused report', async (t) => {
    const receiver = await Receiver.start()
    t.after(() => receiver.close())
    receiver.fallback = (req) => keyOf(req) === 'id-0002' ? 422 : 200
    const { collector, clock } = makeCollector({ ...fast, reportUrl: receiver.url, reportMaxRejections: 1 })
    collector.record({ uid: 'a', bytes: 2 * MiB, fileType: 'ts' })
    await collector.seal({ force: true })
    clock.advance(1000)
    collector.record({ uid: 'b', bytes: 3 * MiB, fileType: 'ts' })
    await collector.close({ grace: 2 })
    assert.deepEqual(receiver.requests.map((r) => [keyOf(r), r.status]), [['id-0002', 422], ['id-0004', 200]])
    assert.deepEqual(receiver.totals(), new Map([['b', 3 * MiB]]))
  })
})
