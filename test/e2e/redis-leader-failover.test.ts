import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { it } from 'node:test'
import type { CliServer } from '../helpers/cli-server.ts'
import { Receiver } from '../helpers/receiver.ts'
import { redisOrSkip, uniquePrefix } from '../helpers/redis.ts'
import { download, startFleet, stopGracefully, trafficOf } from '../helpers/serve-fleet.ts'
import { waitFor } from '../helpers/wait.ts'

const KiB = 1024
const MiB = 1024 * KiB

/** Index of the one instance that says it holds the reporter lease. */
async function findReporter (servers: readonly CliServer[], alive: (i: number) => boolean = () => true): Promise<number> {
  let index = -1
  await waitFor(async () => {
    const states = await Promise.all(servers.map((s, i) => alive(i) ? trafficOf(s) : undefined))
    const reporters = states.flatMap((s, i) => s?.current_state.is_reporter === true ? [i] : [])
    index = reporters.length === 1 ? reporters[0]! : -1
    return index >= 0
  }, 6000, 'exactly one reporter')
  return index
}

it('SIGKILL of the reporter during a delivery: another instance takes over and delivers the same report; nothing doubled', async (t) => {
  if (!await redisOrSkip(t)) return
  const dir = mkdtempSync(join(tmpdir(), 'sm-failover-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'movie.mp4'), Buffer.alloc(1536 * KiB, 3))
  writeFileSync(join(dir, 'seg.ts'), Buffer.alloc(700 * KiB, 4))
  writeFileSync(join(dir, 'small.ts'), Buffer.alloc(300 * KiB, 5))

  // The first POST is held open until the test says; every later one is answered 200.
  let release!: (status: number) => void
  let drop!: (err: Error) => void
  const held = new Promise<number>((resolve, reject) => {
    release = resolve
    drop = reject
  })
  t.after(() => release(200))
  const receiver = await Receiver.start([{ hold: held }])
  t.after(() => receiver.close())

  const prefix = uniquePrefix('failover')
  const servers = await startFleet(t, 3, prefix, {
    ORIGIN_ROOT: dir,
    TRAFFIC_REPORT_URL: receiver.url,
    TRAFFIC_MIN_BYTES: String(MiB),
    TRAFFIC_REPORT_INTERVAL: '1',
    TRAFFIC_FLUSH_INTERVAL: '0.2', // lease TTL: max(2 s, 3 × 0.2 s) = 2 s
    TRAFFIC_REPORT_TIMEOUT: '30',
    SHUTDOWN_GRACE: '5'
  })
  const reporter = await findReporter(servers)
  const others = [0, 1, 2].filter((i) => i !== reporter)

  // Traffic through every instance, the reporter included.
  const received = new Map<string, number>()
  const plan: Array<[string, number, string]> = [
    ['whole', others[0]!, '/movie.mp4'], // 1.5 MiB: qualifies on one instance
    ['split', others[1]!, '/seg.ts'], ['split', reporter, '/seg.ts'], // 2 × 700 KiB: qualifies only summed
    ['below', reporter, '/small.ts'], ['below', others[0]!, '/small.ts'] // 600 KiB: stays below
  ]
  for (const [uid, i, path] of plan) {
    const got = await download(servers[i]!, `${path}?uid=${uid}`)
    assert.equal(got.status, 200)
    received.set(uid, (received.get(uid) ?? 0) + got.bytes)
  }
  assert.deepEqual(Object.fromEntries(received), { whole: 1572864, split: 1433600, below: 614400 })
  // Everything is in Redis before the kill: a SIGKILL may lose only what a
  // process had not flushed yet, and this test is about the delivery.
  await waitFor(async () => {
    const all = await Promise.all(servers.map(trafficOf))
    return all.every((s) => s.current_traffic_summary.unflushed_bytes === 0)
  }, 5000, 'every instance flushed')

  // The reporter seals and POSTs; the receiver holds the request open.
  await receiver.waitForRequests(1, 8000)
  const first = receiver.requests[0]!
  const firstId = String(first.headers['idempotency-key'])
  const firstBody = JSON.parse(first.body) as { report_id: string, worker_id: string }
  assert.equal(firstBody.report_id, firstId)
  const victim = servers[reporter]!
  assert.ok(firstBody.worker_id.endsWith(`-${victim.child.pid}`), `sealed by ${firstBody.worker_id}, the reporter is pid ${victim.child.pid}`)

  victim.child.kill('SIGKILL')
  const killedAt = Date.now()
  await victim.exited
  assert.equal(victim.child.signalCode, 'SIGKILL')
  drop(new Error('the sender is gone')) // the held request is never answered

  // A survivor takes the lease once its TTL has run out, and delivers.
  const survivors = others.map((i) => servers[i]!)
  const next = others[await findReporter(survivors)]!
  const takeoverMs = Date.now() - killedAt
  assert.ok(takeoverMs < 5000, `takeover after ${takeoverMs} ms`)
  await waitFor(() => receiver.accepted.some((r) => r.headers['idempotency-key'] === firstId), 6000, 'the held report, delivered again')
  const again = receiver.accepted.find((r) => r.headers['idempotency-key'] === firstId)!
  assert.equal(again.body, first.body, 'byte-identical body')
  assert.equal(first.status, undefined, 'the first attempt was never answered')

  // Every qualified uid is delivered; the outbox runs empty on the survivor.
  await waitFor(() => receiver.totals().has('whole') && receiver.totals().has('split'), 6000, 'both qualified uids delivered')
  await waitFor(async () => (await trafficOf(servers[next]!)).outbox.pending === 0, 6000, 'outbox empty')
  const status = await trafficOf(servers[next]!)
  assert.equal(status.outbox.pending, 0)
  assert.equal(status.outbox.pending_bytes, 0)
  assert.ok(status.statistics.reports_delivered_here >= 1, 'the new reporter delivered')
  assert.deepEqual(Object.fromEntries(receiver.totals()), { whole: 1572864, split: 1433600 })
  assert.equal(status.current_traffic_summary.pending_bytes, 614400, 'the sub-threshold uid is still accumulating')

  // Nothing doubled: each delivered report names a uid once, each uid is in one report.
  const seen = new Map<string, string>()
  for (const report of receiver.reports) {
    for (const d of report.traffic_details as Array<{ uid: string }>) {
      assert.ok(!seen.has(d.uid), `${d.uid} in reports ${seen.get(d.uid)} and ${String(report.report_id)}`)
      seen.set(d.uid, String(report.report_id))
    }
  }
  // Every request for one report id carried the same bytes.
  for (const r of receiver.requests) {
    const same = receiver.requests.find((o) => o.headers['idempotency-key'] === r.headers['idempotency-key'])!
    assert.equal(r.body, same.body)
  }
  assert.equal(status.statistics.total_bytes_reported, 1572864 + 1433600)
  t.diagnostic(`takeover after ${takeoverMs} ms; ${receiver.requests.length} POSTs for ${receiver.reports.length} reports`)

  for (const i of others) assert.equal(await stopGracefully(servers[i]!), 0, servers[i]!.output())
})
