/**
 * A report larger than the receiver takes (nginx answers 413 over 1 MiB by
 * default) used to be retried forever, and stored reports were never
 * re-split. Now a 413 splits the stored report in two, each half a new
 * report_id in its place, down to one uid (docs/report-format.md#refused-reports).
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { Ajv } from 'ajv'
import { renderReports, splitReport } from '../../src/meter/index.ts'
import type { UsageRecord } from '../../src/meter/index.ts'
import { Receiver } from '../helpers/receiver.ts'
import type { ReceivedRequest } from '../helpers/receiver.ts'
import { MiB, makeCollector } from '../helpers/collector-fixture.ts'
import { waitFor } from '../helpers/wait.ts'

const fast = { flushInterval: 0.05, retryBase: 0.01, retryCap: 0.05 }
// The JSON Schema of docs/report-format.md (its last json block): halves are reports too.
// multipleOfPrecision: `total_mb` 1.15 is 114.99999999999999 hundredths in binary floating point.
const schemaText = [...readFileSync(new URL('../../docs/report-format.md', import.meta.url), 'utf8').matchAll(/```json\n([\s\S]*?)\n```/g)].at(-1)?.[1]
const validate = new Ajv({ allErrors: true, strict: true, multipleOfPrecision: 9 }).compile(JSON.parse(schemaText ?? '{}') as object)
const T = Date.UTC(2026, 10, 26, 9, 5, 7)

/** Answers 413 to bodies over `limit` bytes, like nginx's client_max_body_size. */
function bodyLimit (limit: number) {
  return (req: ReceivedRequest) => Buffer.byteLength(req.body) > limit ? 413 : 200
}

function rec (uid: string, bytes: number, requests = 3): UsageRecord {
  return { uid, bytes, requests, fileTypes: { ts: bytes }, ips: ['10.0.0.1'], sessions: [], startTime: T - 90_000, lastActivity: T, qualified: true }
}

describe('splitting a stored report in two', () => {
  const ctx = { workerId: 'w-1', reportInterval: 300, minBytes: 1048576, maxUidsPerReport: 5000 }

  it('halves the lines, recomputes each summary, keeps every other field and names the report it replaces', () => {
    let n = 0
    const [report] = renderReports([rec('a', 5000, 1), rec('b', 4001, 2), rec('c', 3000, 4)], T, { ...ctx, newId: () => `id${++n}` })
    assert.ok(report)
    const halves = splitReport({ ...report, uids: 3, bytes: 12001 }, () => `half${++n}`)
    assert.ok(halves)
    const [first, second] = halves.map((h) => JSON.parse(h.body))
    const original = JSON.parse(report.body)
    assert.deepEqual(halves.map((h) => [h.reportId, h.uids, h.bytes]), [['half3', 2, 9001], ['half4', 1, 3000]])
    assert.deepEqual(first, {
      ...original,
      report_id: 'half3',
      total_qualified_uids: 2,
      traffic_details: original.traffic_details.slice(0, 2),
      summary: { total_bytes: 9001, total_mb: 0.01, total_requests: 3, avg_bytes_per_uid: 4500, report_generated_at: original.summary.report_generated_at },
      split_from: 'id2'
    })
    assert.deepEqual(second.traffic_details, original.traffic_details.slice(2))
    assert.deepEqual(second.summary, { total_bytes: 3000, total_mb: 0, total_requests: 4, avg_bytes_per_uid: 3000, report_generated_at: '2026-11-26 09:05:07 UTC' })
    // Same place in the window; the field order of the format; split_from last.
    assert.deepEqual([first.window_id, first.part, first.parts, first.timestamp], [original.window_id, 1, 1, original.timestamp])
    assert.deepEqual(Object.keys(second), [...Object.keys(original), 'split_from'])
    // A half split again names the half.
    const quarters = splitReport({ reportId: 'half3', body: halves[0].body, uids: 2, bytes: 9001 }, () => `q${++n}`)
    assert.deepEqual(quarters?.map((q) => JSON.parse(q.body).split_from), ['half3', 'half3'])
    assert.deepEqual(Object.keys(JSON.parse(quarters?.[0]?.body ?? '{}')), Object.keys(second))
  })

  it('cannot split one uid, a body that is not a report, or one that does not add up to the entry', () => {
    const [one] = renderReports([rec('a', 5000)], T, { ...ctx, newId: () => 'x' })
    assert.ok(one)
    assert.equal(splitReport({ ...one, uids: 1, bytes: 5000 }, () => 'y'), undefined)
    for (const body of ['not json', '[]', '{"traffic_details":[{"uid":"a"},{"uid":"b"}],"summary":{}}', '{"traffic_details":[]}']) {
      assert.equal(splitReport({ reportId: 'r', body, uids: 2, bytes: 2 }, () => 'y'), undefined, body)
    }
    const [two] = renderReports([rec('a', 5000), rec('b', 4000)], T, { ...ctx, newId: () => 'x' })
    assert.ok(two)
    assert.equal(splitReport({ ...two, uids: 2, bytes: 9001 }, () => 'y'), undefined)
  })
})

describe('a receiver that answers 413', () => {
  it('gets the report split until every part fits: each uid\'s exact bytes arrive once', async (t) => {
    const limit = 4096
    const receiver = await Receiver.start()
    receiver.fallback = bodyLimit(limit)
    t.after(() => receiver.close())
    const { collector, store } = makeCollector({ ...fast, reportUrl: receiver.url })
    t.after(() => collector.close({ grace: 1 }))
    const expected = new Map<string, number>()
    for (let i = 0; i < 60; i++) {
      const uid = `viewer-${String(i).padStart(3, '0')}-${'x'.repeat(i % 7)}`
      const bytes = MiB + i * 4099
      expected.set(uid, bytes)
      collector.record({ uid, bytes, fileType: i % 2 === 0 ? 'ts' : 'm4s', ip: `10.0.0.${i}` })
    }
    const { reports } = await collector.seal({ force: true })
    assert.equal(reports.length, 1)
    assert.ok(Buffer.byteLength(reports[0]!.body) > 4 * limit, 'one report several times over the limit')

    collector.start()
    await waitFor(async () => (await collector.status()).outbox.pending === 0, 10_000, 'outbox delivered')
    assert.deepEqual(receiver.totals(), expected)
    // Every uid once over the accepted reports, each under the limit.
    const uids = receiver.reports.flatMap((r) => r.traffic_details.map((d: { uid: string }) => d.uid))
    assert.equal(uids.length, 60)
    assert.equal(new Set(uids).size, 60)
    for (const r of receiver.accepted) assert.ok(Buffer.byteLength(r.body) <= limit)
    for (const r of receiver.reports) {
      assert.ok(validate(r), JSON.stringify(validate.errors))
      assert.equal(r.total_qualified_uids, r.traffic_details.length)
      assert.equal(r.summary.total_bytes, r.traffic_details.reduce((sum: number, d: { total_bytes: number }) => sum + d.total_bytes, 0))
      assert.deepEqual([r.window_id, r.part, r.parts], [JSON.parse(reports[0]!.body).window_id, 1, 1])
      assert.equal(typeof r.split_from, 'string')
    }
    // Every refused body was split exactly once: no report is both refused and accepted.
    const refused = new Set(receiver.requests.filter((r) => r.status === 413).map((r) => String(r.headers['idempotency-key'])))
    assert.equal(receiver.accepted.filter((r) => refused.has(String(r.headers['idempotency-key']))).length, 0)
    const status = await collector.status()
    assert.equal(status.statistics.reports_split, refused.size)
    assert.equal(status.statistics.reports_created - status.statistics.reports_split, status.statistics.total_reports_sent)
    assert.equal(status.statistics.total_bytes_reported, [...expected.values()].reduce((a, b) => a + b, 0))
    assert.deepEqual([status.outbox.pending, status.outbox.parked, status.statistics.reports_parked], [0, 0, 0])
    assert.deepEqual(await store.outbox(), [])
  })

  it('a one-uid report that is still too large is parked like any lasting refusal', async (t) => {
    const receiver = await Receiver.start()
    receiver.fallback = bodyLimit(300) // no report body is that small
    t.after(() => receiver.close())
    const { collector, store } = makeCollector({ ...fast, reportUrl: receiver.url, reportMaxRejections: 2 })
    t.after(() => collector.close({ grace: 1 }))
    collector.record({ uid: 'a', bytes: 2 * MiB, fileType: 'ts' })
    collector.record({ uid: 'b', bytes: 3 * MiB, fileType: 'ts' })
    await collector.seal({ force: true })
    collector.start()
    await waitFor(async () => (await collector.status()).outbox.parked === 2, 5000, 'both halves parked')
    // One split, then each one-uid half refused twice.
    assert.deepEqual(receiver.requests.map((r) => r.status), [413, 413, 413, 413, 413])
    const parked = await store.outboxList()
    assert.deepEqual(parked.map((e) => [e.uids, e.bytes, e.rejections, e.lastStatus]), [[1, 3 * MiB, 2, 413], [1, 2 * MiB, 2, 413]])
    assert.equal((await collector.status()).statistics.reports_split, 1)
  })
})
