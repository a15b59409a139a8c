import assert from 'node:assert/strict'
import { it } from 'node:test'
import { Receiver } from '../helpers/receiver.ts'
import { KiB, MiB, makeCollector } from '../helpers/collector-fixture.ts'
import { waitFor } from '../helpers/wait.ts'

// The service this replaces reset its counters after the POST returned, so
// everything recorded while a report was in flight vanished. Here the seal is
// atomic and happens before any network call: traffic after it belongs to the
// next window whatever the endpoint does.
it('events recorded while a report POST is pending are in the next report; totals exact', async (t) => {
  let release!: (status: number) => void
  const held = new Promise<number>((resolve) => { release = resolve })
  const receiver = await Receiver.start([{ hold: held }])
  t.after(() => receiver.close())
  const { collector } = makeCollector({ reportUrl: receiver.url, flushInterval: 0.05, retryBase: 0.01 })
  t.after(() => collector.close({ grace: 1 }))
  collector.start()

  collector.record({ uid: 'u1', bytes: 2 * MiB, fileType: 'ts' })
  collector.record({ uid: 'u2', bytes: 1 * MiB, fileType: 'ts' })
  const first = await collector.seal({ force: true })
  assert.equal(first.reports.length, 1)
  await receiver.waitForRequests(1) // the POST is now pending at the receiver

  // Traffic during the pending POST, flushed and sealed into a second report.
  collector.record({ uid: 'u1', bytes: 3 * MiB + 7, fileType: 'm4s' })
  collector.record({ uid: 'u3', bytes: 1500 * KiB, fileType: 'ts' })
  await collector.flush()
  const second = await collector.seal({ force: true })
  assert.equal(second.reports.length, 1)

  release(200)
  await receiver.waitForRequests(2)
  await waitFor(async () => (await collector.status()).outbox.pending === 0)

  const [r1, r2] = receiver.reports
  assert.ok(r1 && r2)
  assert.deepEqual(detailBytes(r1), { u1: 2 * MiB, u2: 1 * MiB })
  assert.deepEqual(detailBytes(r2), { u1: 3 * MiB + 7, u3: 1500 * KiB })
  assert.deepEqual(Object.fromEntries(receiver.totals()), { u1: 5 * MiB + 7, u2: MiB, u3: 1500 * KiB })
  assert.notEqual(r1.report_id, r2.report_id)
})

function detailBytes (report: Record<string, any>): Record<string, number> {
  return Object.fromEntries((report.traffic_details as Array<{ uid: string, total_bytes: number }>).map((d) => [d.uid, d.total_bytes]))
}
