import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Receiver } from '../helpers/receiver.ts'
import { MiB, makeCollector } from '../helpers/collector-fixture.ts'
import { waitFor } from '../helpers/wait.ts'
import { retryDelayMs } from '../../src/meter/index.ts'

const fast = { flushInterval: 0.05, retryBase: 0.01, retryCap: 0.05 }

describe('report delivery retries', () => {
  it('500 three times then 200: one report_id, byte-identical bodies, the headers of the contract', async (t) => {
    const receiver = await Receiver.start([500, 500, 500])
    t.after(() => receiver.close())
    const { collector } = makeCollector({ ...fast, reportUrl: receiver.url, apiKey: 'k-secret-123' })
    t.after(() => collector.close({ grace: 1 }))
    collector.start()
    collector.record({ uid: 'u', bytes: 2 * MiB, fileType: 'ts' })
    await collector.seal({ force: true })

    await receiver.waitForRequests(4)
    await waitFor(async () => (await collector.status()).outbox.pending === 0)
    assert.deepEqual(receiver.requests.map((r) => r.status), [500, 500, 500, 200])
    const ids = new Set(receiver.requests.map((r) => r.headers['idempotency-key']))
    assert.equal(ids.size, 1)
    const bodies = new Set(receiver.requests.map((r) => r.body))
    assert.equal(bodies.size, 1)
    const first = receiver.requests[0]!
    assert.equal(JSON.parse(first.body).report_id, first.headers['idempotency-key'])
    assert.equal(first.headers['content-type'], 'application/json')
    assert.equal(first.headers.authorization, 'Bearer k-secret-123')
    assert.match(String(first.headers['user-agent']), /^streammeter\/\d+\.\d+\.\d+/)
    assert.match(String(first.headers['x-report-time']), /^\d{10}$/)

    const status = await collector.status()
    assert.equal(status.statistics.reports_failed, 3)
    assert.equal(status.statistics.total_reports_sent, 1)
    assert.equal(status.outbox.last_error, 'report endpoint answered HTTP 500')
    assert.ok(!JSON.stringify(status).includes('k-secret-123'), '/traffic must not show the key')
  })

  it('409 means "already have it" and ends the retries', async (t) => {
    const receiver = await Receiver.start([409])
    receiver.fallback = 500
    t.after(() => receiver.close())
    const { collector } = makeCollector({ ...fast, reportUrl: receiver.url })
    t.after(() => collector.close({ grace: 1 }))
    collector.start()
    collector.record({ uid: 'u', bytes: 2 * MiB, fileType: 'ts' })
    await collector.seal({ force: true })
    await waitFor(async () => (await collector.status()).outbox.pending === 0)
    await new Promise((resolve) => setTimeout(resolve, 200))
    assert.equal(receiver.requests.length, 1)
    assert.equal((await collector.status()).statistics.total_reports_sent, 1)
  })

  it('a hanging receiver times out and the same report is retried', async (t) => {
    const receiver = await Receiver.start(['hang'])
    t.after(() => receiver.close())
    const { collector } = makeCollector({ ...fast, reportUrl: receiver.url, reportTimeout: 0.3 })
    t.after(() => collector.close({ grace: 1 }))
    collector.start()
    collector.record({ uid: 'u', bytes: 2 * MiB, fileType: 'ts' })
    await collector.seal({ force: true })
    await receiver.waitForRequests(2)
    await waitFor(async () => (await collector.status()).outbox.pending === 0)
    assert.equal(receiver.requests[0]!.headers['idempotency-key'], receiver.requests[1]!.headers['idempotency-key'])
    assert.equal(receiver.requests[0]!.body, receiver.requests[1]!.body)
    const status = await collector.status()
    assert.equal(status.statistics.reports_failed, 1)
    assert.equal(status.outbox.last_error, 'report endpoint did not answer within 0.3 s')
  })

  it('an unreachable receiver is retried until it comes up; reports arrive in creation order, one at a time', async (t) => {
    const receiver = await Receiver.start([503, 503, 503, 503])
    t.after(() => receiver.close())
    const { collector, clock } = makeCollector({ ...fast, reportUrl: receiver.url, reportMaxUids: 2 })
    t.after(() => collector.close({ grace: 1 }))
    const created: string[] = []
    for (let w = 0; w < 3; w++) {
      for (let u = 0; u < 3; u++) collector.record({ uid: `w${w}-u${u}`, bytes: MiB + u, fileType: 'ts' })
      clock.advance(1000)
      const { reports } = await collector.seal({ force: true })
      created.push(...reports.map((r) => r.reportId))
    }
    assert.equal(created.length, 6) // 3 uids per window, 2 per report: two parts each
    collector.start()
    await waitFor(async () => (await collector.status()).outbox.pending === 0)
    const keys = receiver.requests.map((r) => String(r.headers['idempotency-key']))
    // The first report is retried alone until accepted; then the rest follow in order.
    assert.deepEqual(keys, [created[0], created[0], created[0], created[0], ...created])
    assert.deepEqual(receiver.reports.map((r) => r.report_id), created)
    assert.deepEqual(receiver.reports.map((r) => [r.part, r.parts]), [[1, 2], [2, 2], [1, 2], [2, 2], [1, 2], [2, 2]])
  })
})

describe('backoff', () => {
  it('doubles from 1 s to a 5 min cap with ±20 % jitter', () => {
    const mid = (): number => 0.5
    assert.deepEqual([1, 2, 3, 4, 9, 10, 30].map((n) => retryDelayMs(n, 1, 300, mid)), [1000, 2000, 4000, 8000, 256000, 300000, 300000])
    assert.equal(retryDelayMs(1, 1, 300, () => 0), 800)
    assert.equal(retryDelayMs(1, 1, 300, () => 0.999999), 1200)
    assert.equal(retryDelayMs(20, 1, 300, () => 0.999999), 300000)
  })
})
