import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Receiver } from '../helpers/receiver.ts'
import { KiB, makeCollector } from '../helpers/collector-fixture.ts'

describe('threshold, qualification and expiry', () => {
  it('500 KiB then 600 KiB qualifies one record with everything since the cycle began', async (t) => {
    const receiver = await Receiver.start()
    t.after(() => receiver.close())
    const { collector, clock } = makeCollector({ reportUrl: receiver.url, reportInterval: 300 })
    const t0 = clock.now()
    await collector.tick() // schedules the first seal at t0 + 300 s

    clock.advance(5_000)
    collector.record({ uid: 'alice', bytes: 500 * KiB, fileType: 'ts', ip: '10.0.0.1', sessionId: 's1' })
    await collector.tick()
    let status = await collector.status()
    assert.equal(status.current_state.pending_accumulator_uids, 1)
    assert.equal(status.current_state.qualified_uids, 0)

    clock.advance(10_000)
    collector.record({ uid: 'alice', bytes: 600 * KiB, fileType: 'm3u8', ip: '10.0.0.2', sessionId: 's2' })
    await collector.tick()
    status = await collector.status()
    assert.equal(status.current_state.qualified_uids, 1)
    assert.equal(status.current_state.pending_accumulator_uids, 0)
    assert.equal(status.current_state.next_report_in_seconds, 285)

    clock.set(t0 + 300_000)
    await collector.tick()
    const run = await collector.deliverPending()
    assert.deepEqual(run, { delivered: 1, failed: false })

    const [report] = receiver.reports
    assert.ok(report)
    assert.equal(report.total_qualified_uids, 1)
    assert.equal(report.min_bytes_threshold, 1048576)
    const [d] = report.traffic_details
    const start = Math.floor((t0 + 5_000) / 1000)
    assert.deepEqual(d, {
      uid: 'alice',
      total_bytes: 1100 * KiB,
      total_mb: 1.07,
      request_count: 2,
      duration_seconds: 10,
      start_time: start,
      last_activity: start + 10,
      file_types: { ts: 500 * KiB, m3u8: 600 * KiB },
      unique_ips: 2,
      unique_sessions: 2,
      avg_bytes_per_request: 563200,
      bytes_per_second: 112640
    })
    // Reported records reset: the uid must qualify again.
    status = await collector.status()
    assert.equal(status.current_state.qualified_uids, 0)
    assert.equal(status.statistics.total_reports_sent, 1)
    assert.equal(status.statistics.total_bytes_reported, 1100 * KiB)
  })

  it('a 500 KiB uid expires after 600 s and is counted in bytes_discarded', async () => {
    const { collector, clock } = makeCollector({})
    const t0 = clock.now()
    collector.record({ uid: 'bob', bytes: 500 * KiB, fileType: 'ts' })
    await collector.tick()

    clock.set(t0 + 600_000) // exactly the timeout: not yet longer ago than it
    await collector.tick()
    let status = await collector.status()
    assert.equal(status.current_state.pending_accumulator_uids, 1)
    assert.equal(status.statistics.bytes_discarded, 0)

    clock.set(t0 + 600_001)
    await collector.tick()
    status = await collector.status()
    assert.equal(status.current_state.pending_accumulator_uids, 0)
    assert.equal(status.statistics.bytes_discarded, 500 * KiB)
    assert.equal(status.statistics.accumulator_cleanups, 1)

    const sealed = await collector.seal({ force: true })
    assert.equal(sealed.reports.length, 0)
  })

  it('sub-threshold bytes carry over a seal and qualify in a later window', async () => {
    const { collector, clock } = makeCollector({})
    collector.record({ uid: 'carol', bytes: 700 * KiB, fileType: 'ts' })
    assert.equal((await collector.seal({ force: true })).reports.length, 0)
    clock.advance(60_000)
    collector.record({ uid: 'carol', bytes: 400 * KiB, fileType: 'ts' })
    const { reports } = await collector.seal({ force: true })
    assert.equal(reports.length, 1)
    const body = JSON.parse(reports[0]!.body)
    assert.equal(body.traffic_details[0].total_bytes, 1100 * KiB)
    assert.equal(body.traffic_details[0].duration_seconds, 60)
  })

  it('TRAFFIC_MIN_BYTES=0 reports every byte', async () => {
    const { collector, clock } = makeCollector({ minBytes: 0 })
    collector.record({ uid: 'a', bytes: 1, fileType: 'key' })
    collector.record({ uid: 'b', bytes: 2, fileType: 'vtt' })
    clock.advance(10_000_000) // far beyond any timeout: nothing is discarded
    collector.record({ uid: 'c', bytes: 3, fileType: 'aac' })
    await collector.expire()
    const { reports } = await collector.seal({ force: true })
    const body = JSON.parse(reports[0]!.body)
    assert.deepEqual(body.traffic_details.map((d: { uid: string, total_bytes: number }) => [d.uid, d.total_bytes]), [['c', 3], ['b', 2], ['a', 1]])
    assert.equal(body.summary.total_bytes, 6)
    assert.equal((await collector.status()).statistics.bytes_discarded, 0)
  })

  it('ignores events without uid or bytes, and counts them', async () => {
    const { collector } = makeCollector({ minBytes: 0 })
    collector.record({ uid: '', bytes: 100, fileType: 'ts' })
    collector.record({ uid: 'x', bytes: 0, fileType: 'ts' })
    collector.record({ uid: 'x', bytes: -5, fileType: 'ts' })
    collector.record({ uid: 'x', bytes: 1.5, fileType: 'ts' })
    collector.record({ uid: 'x', bytes: Number.NaN, fileType: 'ts' })
    const status = await collector.status()
    assert.equal(status.statistics.events_ignored, 5)
    assert.equal(status.statistics.events_recorded, 0)
    assert.equal((await collector.seal({ force: true })).reports.length, 0)
  })
})
