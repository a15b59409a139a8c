import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ManualClock } from '../../src/meter/index.ts'
import type { TrafficReport } from '../../src/meter/index.ts'
import { makeCollector } from '../helpers/collector-fixture.ts'

/**
 * Usage time comes from the clock the collector is given, never
 * from the machine's: on a clock 74 years ahead of the real one, events are
 * stamped, cycles aged and expired, windows sealed and reports dated by that
 * clock alone. A reading of the real clock anywhere on that path would put a
 * timestamp in the wrong century or keep a cycle from ever expiring.
 *
 * Two readings are real time on purpose, and commented where they are made:
 * close()'s grace (pinned by store-outage.test.ts) and the yardstick the
 * clock-jump warning holds the clock against.
 */
const FAR = Date.UTC(2100, 0, 1) // ms; far from any real clock the tests run on
const INTERVAL = 300 // seconds
const TIMEOUT = 60 // seconds

describe('a collector on an injected clock', () => {
  it('stamps, expires, seals and reports by that clock only', async () => {
    const clock = new ManualClock(FAR)
    const { collector, store } = makeCollector(
      { minBytes: 1000, reportInterval: INTERVAL, accumulatorTimeout: TIMEOUT },
      { clock }
    )
    await collector.tick() // schedules the first seal at FAR + 300 s

    clock.advance(1_000)
    collector.record({ uid: 'small', bytes: 10, fileType: 'ts' }) // no `time`: stamped by the clock
    collector.record({ uid: 'big', bytes: 600, fileType: 'ts' })
    clock.advance(2_000)
    collector.record({ uid: 'big', bytes: 600, fileType: 'm3u8' })
    await collector.flush()
    const stamps = Object.fromEntries((await store.records()).map((r) => [r.uid, [r.startTime, r.lastActivity]]))
    assert.deepEqual(stamps, { big: [FAR + 1_000, FAR + 3_000], small: [FAR + 1_000, FAR + 1_000] })

    // Aged by the clock: just before the timeout nothing expires, just after it does.
    clock.set(FAR + 1_000 + TIMEOUT * 1000 - 1)
    assert.deepEqual(await collector.expire(), [])
    clock.advance(2)
    assert.deepEqual(await collector.expire(), [{ uid: 'small', bytes: 10, startTime: FAR + 1_000 }])

    let status = await collector.status()
    assert.equal(status.current_state.next_report_in_seconds, 239)

    // Sealed by the clock: not a millisecond early.
    clock.set(FAR + INTERVAL * 1000 - 1)
    await collector.tick()
    assert.equal((await store.outbox()).length, 0, 'not due yet')
    clock.advance(1)
    await collector.tick()
    const [entry] = await store.outbox()
    assert.ok(entry)
    assert.equal(entry.createdAt, FAR + INTERVAL * 1000)
    const report = JSON.parse(entry.body) as TrafficReport
    assert.equal(report.timestamp, FAR / 1000 + INTERVAL)
    assert.equal(report.summary.report_generated_at, '2100-01-01 00:05:00 UTC')
    assert.deepEqual(report.traffic_details.map((d) => [d.uid, d.start_time, d.last_activity, d.duration_seconds]),
      [['big', FAR / 1000 + 1, FAR / 1000 + 3, 2]])

    clock.advance(90_000)
    status = await collector.status()
    assert.equal(status.outbox.oldest_age_seconds, 90, 'the outbox ages by the clock')
    assert.equal(status.current_state.next_report_in_seconds, 210)
  })
})
