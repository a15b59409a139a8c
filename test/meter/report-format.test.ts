import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { describe, it } from 'node:test'
import { formatUtc, renderReports, round2, trafficDetail } from '../../src/meter/index.ts'
import type { UsageRecord } from '../../src/meter/index.ts'

const T = Date.UTC(2026, 10, 26, 9, 5, 7, 450) // 2026-11-26 09:05:07.450 UTC

function rec (uid: string, bytes: number, extra: Partial<UsageRecord> = {}): UsageRecord {
  return { uid, bytes, requests: 3, fileTypes: { ts: bytes }, ips: ['10.0.0.1'], sessions: [], startTime: T - 90_500, lastActivity: T - 500, qualified: true, ...extra }
}

describe('report body (docs/report-format.md#body)', () => {
  it('has every field of the original format with its type, rounding and date format', () => {
    let n = 0
    const [r] = renderReports([rec('alice', 5_000_000, { fileTypes: { ts: 4_000_000, m3u8: 1_000_000 }, ips: ['a', 'b'], sessions: ['s'] })], T, {
      workerId: 'w-1', reportInterval: 300, minBytes: 1048576, maxUidsPerReport: 5000, newId: () => `id${++n}`
    })
    assert.ok(r)
    const body = JSON.parse(r.body)
    assert.deepEqual(body, {
      report_id: 'id2',
      timestamp: Math.floor(T / 1000),
      worker_id: 'w-1',
      report_interval_seconds: 300,
      min_bytes_threshold: 1048576,
      total_qualified_uids: 1,
      traffic_details: [{
        uid: 'alice',
        total_bytes: 5_000_000,
        total_mb: 4.77,
        request_count: 3,
        duration_seconds: 90,
        start_time: Math.floor((T - 90_500) / 1000),
        last_activity: Math.floor((T - 500) / 1000),
        file_types: { ts: 4_000_000, m3u8: 1_000_000 },
        unique_ips: 2,
        unique_sessions: 1,
        avg_bytes_per_request: 1666666,
        bytes_per_second: 55555
      }],
      summary: {
        total_bytes: 5_000_000,
        total_mb: 4.77,
        total_requests: 3,
        avg_bytes_per_uid: 5_000_000,
        report_generated_at: '2026-11-26 09:05:07 UTC'
      },
      window_id: 'id1',
      part: 1,
      parts: 1
    })
    assert.equal(r.reportId, 'id2')
    assert.equal(r.uids, 1)
    assert.equal(r.bytes, 5_000_000)
  })

  it('avg_bytes_per_request, bytes_per_second and avg_bytes_per_uid are integers, truncated as the original sent them', () => {
    // 1 MiB over 3 requests and 3 s: 349525.33 each, which a receiver with integer fields refuses.
    const records = [rec('a', 1048576, { startTime: T - 3000, lastActivity: T }), rec('b', 1048577, { startTime: T - 3000, lastActivity: T })]
    let n = 0
    const [r] = renderReports(records, T, { workerId: 'w', reportInterval: 300, minBytes: 0, maxUidsPerReport: 10, newId: () => `id${++n}` })
    const body = JSON.parse(r!.body)
    assert.deepEqual(body.traffic_details.map((d: Record<string, number>) => [d.avg_bytes_per_request, d.bytes_per_second]), [[349525, 349525], [349525, 349525]])
    assert.equal(body.summary.avg_bytes_per_uid, 1048576) // (1048576 + 1048577) / 2 = 1048576.5
    assert.ok(!/\d\.\d/.test(r!.body.replace(/"total_mb":[\d.]+/g, '')), 'no decimal besides total_mb')
  })

  it('duration is at least 1 s, computed on the whole seconds shown', () => {
    const d = trafficDetail(rec('x', 1000, { startTime: T, lastActivity: T + 200 }))
    assert.equal(d.duration_seconds, 1)
    assert.equal(d.bytes_per_second, 1000)
    assert.equal(d.duration_seconds, Math.max(1, d.last_activity - d.start_time))
  })

  it('splits at TRAFFIC_REPORT_MAX_UIDS, each part with its own report_id and summary', () => {
    let n = 0
    const records = Array.from({ length: 7 }, (_, i) => rec(`u${i}`, 1000 * (7 - i)))
    const parts = renderReports(records, T, { workerId: 'w', reportInterval: 300, minBytes: 0, maxUidsPerReport: 3, newId: () => `id${++n}` })
    assert.equal(parts.length, 3)
    const bodies = parts.map((p) => JSON.parse(p.body))
    assert.deepEqual(bodies.map((b) => b.traffic_details.length), [3, 3, 1])
    assert.deepEqual(bodies.map((b) => b.total_qualified_uids), [3, 3, 1])
    assert.deepEqual(bodies.map((b) => b.summary.total_bytes), [18000, 9000, 1000])
    assert.deepEqual(bodies.map((b) => [b.part, b.parts]), [[1, 3], [2, 3], [3, 3]])
    assert.equal(new Set(bodies.map((b) => b.report_id)).size, 3)
    assert.equal(new Set(bodies.map((b) => b.window_id)).size, 1)
    assert.deepEqual(parts.map((p) => p.reportId), bodies.map((b) => b.report_id))
  })

  it('splits at TRAFFIC_REPORT_MAX_BYTES: 5000 UUID uids (1.3 MB in one body) go out as parts of at most 512 KiB', () => {
    let n = 0
    const records = Array.from({ length: 5000 }, (_, i) => rec(randomUUID(), 2_000_000 - i, { fileTypes: { ts: 1_900_000 - i, m3u8: 100_000 } }))
    const ctx = { workerId: 'edge-1-4242', reportInterval: 300, minBytes: 1048576, maxUidsPerReport: 5000, newId: () => randomUUID() }
    const whole = renderReports(records, T, ctx)
    assert.equal(whole.length, 1)
    assert.ok(Buffer.byteLength(whole[0]!.body) > 1024 * 1024, `one body of ${whole[0]!.body.length} bytes`)

    const parts = renderReports(records, T, { ...ctx, maxBytesPerReport: 524288, newId: () => `id${++n}` })
    const bodies = parts.map((p) => JSON.parse(p.body))
    assert.equal(parts.length, 3)
    // Full parts: under the limit, and less than one more line short of it.
    const sizes = parts.map((p) => Buffer.byteLength(p.body))
    for (const size of sizes) assert.ok(size <= 524288, `${size} bytes`)
    for (const size of sizes.slice(0, -1)) assert.ok(size > 524288 - 1000, `${size} bytes`)
    // Every uid once, in order; totals per part; parts numbered within one window.
    assert.deepEqual(bodies.flatMap((b) => b.traffic_details.map((d: { uid: string }) => d.uid)), records.map((r) => r.uid))
    assert.deepEqual(parts.map((p) => p.uids), bodies.map((b) => b.traffic_details.length))
    assert.deepEqual(parts.map((p) => p.bytes), bodies.map((b) => b.summary.total_bytes))
    assert.equal(parts.reduce((sum, p) => sum + p.bytes, 0), records.reduce((sum, r) => sum + r.bytes, 0))
    assert.deepEqual(bodies.map((b) => [b.part, b.parts]), [[1, 3], [2, 3], [3, 3]])
    assert.deepEqual(bodies.map((b) => b.window_id), ['id1', 'id1', 'id1'])
    assert.deepEqual(parts.map((p) => p.reportId), ['id2', 'id3', 'id4'])
    // The body is exactly what JSON.stringify makes of it: fields in the format's order.
    for (const p of parts) assert.equal(p.body, JSON.stringify(JSON.parse(p.body)))
    assert.deepEqual(Object.keys(bodies[0]), ['report_id', 'timestamp', 'worker_id', 'report_interval_seconds', 'min_bytes_threshold',
      'total_qualified_uids', 'traffic_details', 'summary', 'window_id', 'part', 'parts'])
  })

  it('the uid and byte limits apply together; a line larger than the byte limit gets a part of its own', () => {
    let n = 0
    const long = 'u'.repeat(3000)
    const records = [rec('a', 9000), rec(long, 8000), rec('b', 7000), rec('c', 6000), rec('d', 5000)]
    const parts = renderReports(records, T, { workerId: 'w', reportInterval: 300, minBytes: 0, maxUidsPerReport: 2, maxBytesPerReport: 1024, newId: () => `id${++n}` })
    assert.deepEqual(parts.map((p) => JSON.parse(p.body).traffic_details.map((d: { uid: string }) => d.uid.slice(0, 1))), [['a'], ['u'], ['b', 'c'], ['d']])
    assert.ok(Buffer.byteLength(parts[1]!.body) > 3000)
    for (const p of [parts[0]!, ...parts.slice(2)]) assert.ok(Buffer.byteLength(p.body) <= 1024)
  })

  it('renders nothing for a window without qualified uids', () => {
    assert.deepEqual(renderReports([], T, { workerId: 'w', reportInterval: 300, minBytes: 0, maxUidsPerReport: 3, newId: () => 'x' }), [])
  })

  it('rounds to 2 decimals and formats UTC dates', () => {
    assert.equal(round2(1048576 * 1.5 / 1048576), 1.5)
    assert.equal(round2(2 / 3), 0.67)
    assert.equal(round2(0.004), 0)
    assert.equal(formatUtc(Date.UTC(2026, 0, 2, 3, 4, 5)), '2026-01-02 03:04:05 UTC')
  })
})
