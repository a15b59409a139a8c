import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { policyOf, resolveMeterOptions } from '../../src/meter/index.ts'
import { RedisStore } from '../../src/store/redis-store.ts'
import type { CliServer } from '../helpers/cli-server.ts'
import { Receiver } from '../helpers/receiver.ts'
import type { ReceivedRequest } from '../helpers/receiver.ts'
import { REDIS_URL, redisOrSkip, uniquePrefix } from '../helpers/redis.ts'
import { download, startFleet, stopGracefully, trafficOf } from '../helpers/serve-fleet.ts'
import { waitFor } from '../helpers/wait.ts'

const KiB = 1024
const MiB = 1024 * KiB
const THRESHOLD = MiB // TRAFFIC_MIN_BYTES, the default

/** A media directory for the origin. */
function mediaDir (t: TestContext, files: Record<string, number>): string {
  const dir = mkdtempSync(join(tmpdir(), 'sm-multi-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  for (const [name, size] of Object.entries(files)) writeFileSync(join(dir, name), Buffer.alloc(size, 7))
  return dir
}

/** The settings every instance of one deployment shares. */
function fleetEnv (root: string, receiver: Receiver, reportInterval: string): Record<string, string> {
  return {
    ORIGIN_ROOT: root,
    TRAFFIC_REPORT_URL: receiver.url,
    TRAFFIC_MIN_BYTES: String(THRESHOLD),
    TRAFFIC_REPORT_INTERVAL: reportInterval,
    TRAFFIC_FLUSH_INTERVAL: '0.2',
    SHUTDOWN_GRACE: '10'
  }
}

/** The same report id must always carry the same bytes (docs/report-format.md#request). */
function assertStableBodies (requests: readonly ReceivedRequest[]): void {
  const bodies = new Map<string, string>()
  for (const r of requests) {
    const key = String(r.headers['idempotency-key'])
    const seen = bodies.get(key)
    if (seen !== undefined) assert.equal(r.body, seen, `report ${key} was sent with two different bodies`)
    bodies.set(key, r.body)
    assert.equal(JSON.parse(r.body).report_id, key, 'Idempotency-Key is the report_id')
  }
}

/** uid → how many deduplicated reports name it, per window. Fails if a window names a uid twice. */
function appearancesPerUid (reports: ReadonlyArray<Record<string, any>>): Map<string, number> {
  const perWindow = new Map<string, Set<string>>()
  const count = new Map<string, number>()
  for (const report of reports) {
    const window = String(report.window_id ?? report.report_id)
    const uids = perWindow.get(window) ?? new Set<string>()
    perWindow.set(window, uids)
    for (const d of report.traffic_details as Array<{ uid: string }>) {
      assert.ok(!uids.has(d.uid), `uid ${d.uid} appears twice in window ${window}`)
      uids.add(d.uid)
      count.set(d.uid, (count.get(d.uid) ?? 0) + 1)
    }
  }
  return count
}

/** Sum of a map's values. */
function total (m: ReadonlyMap<string, number>): number {
  let sum = 0
  for (const v of m.values()) sum += v
  return sum
}

/** A store on the deployment's prefix, for reading what the instances left in Redis. */
async function openLedger (t: TestContext, prefix: string): Promise<RedisStore> {
  const store = await RedisStore.open(REDIS_URL, policyOf(resolveMeterOptions({ minBytes: THRESHOLD })), { prefix })
  t.after(() => store.close())
  return store
}

describe('several serve processes on one Redis ledger', () => {
  it('600 KiB through each of two instances: one report, exactly 1228800 bytes for the uid', async (t) => {
    if (!await redisOrSkip(t)) return
    const root = mediaDir(t, { 'part.ts': 600 * KiB })
    const receiver = await Receiver.start()
    t.after(() => receiver.close())
    const prefix = uniquePrefix('multi-two')
    const [a, b] = await startFleet(t, 2, prefix, fleetEnv(root, receiver, '1'))
    const ledger = await openLedger(t, prefix)

    // Each instance alone stays below the 1 MiB threshold.
    const got = [await download(a!, '/part.ts?uid=viewer')]
    await waitFor(async () => (await trafficOf(b!)).current_traffic_summary.pending_bytes === 614400, 5000, 'the first half in the ledger')
    const half = await trafficOf(b!)
    assert.equal(half.current_state.qualified_uids, 0, '600 KiB alone does not qualify')
    assert.equal(half.current_state.pending_accumulator_uids, 1)
    got.push(await download(b!, '/part.ts?uid=viewer'))
    assert.deepEqual(got, [{ status: 200, bytes: 614400 }, { status: 200, bytes: 614400 }])

    await waitFor(() => receiver.reports.length > 0, 8000, 'a report')
    // Two more windows sealed (empty ones move next_seal_at too): nothing
    // else may be sent for this uid.
    const sealAt = async (): Promise<number | undefined> => await ledger.nextSealAt()
    const first = await sealAt()
    let seen = first
    let seals = 0
    await waitFor(async () => {
      const now = await sealAt()
      if (now !== seen) {
        seen = now
        seals++
      }
      return seals >= 2
    }, 6000, 'two more seals')

    assertStableBodies(receiver.requests)
    assert.equal(receiver.reports.length, 1, 'one report')
    assert.deepEqual(Object.fromEntries(receiver.totals()), { viewer: 1228800 })
    const [detail] = receiver.reports[0]!.traffic_details as Array<Record<string, unknown>>
    assert.equal(receiver.reports[0]!.traffic_details.length, 1)
    assert.equal(detail!.total_bytes, 1228800)
    assert.equal(detail!.request_count, 2)
    assert.deepEqual(detail!.file_types, { ts: 1228800 })
    assert.equal(receiver.reports[0]!.summary.total_bytes, 1228800)
    assert.deepEqual(await ledger.records(), [], 'nothing left in the accumulator')
    assert.equal((await ledger.outboxStats()).pending, 0, 'outbox empty')

    const reporters = (await Promise.all([a!, b!].map(trafficOf))).filter((s) => s.current_state.is_reporter)
    assert.equal(reporters.length, 1, 'exactly one reporter')
  })

  it('three instances, several uids, stopped one by one: reported + still pending == received; each qualified uid reported once', async (t) => {
    if (!await redisOrSkip(t)) return
    const root = mediaDir(t, {
      'big.mp4': 2 * MiB,
      'seg.ts': 400 * KiB,
      'small.m4s': 100 * KiB,
      'clip.mp4': 500 * KiB,
      'movie.mp4': MiB,
      'late.ts': 1536 * KiB
    })
    const receiver = await Receiver.start()
    t.after(() => receiver.close())
    const prefix = uniquePrefix('multi-three')
    const servers = await startFleet(t, 3, prefix, fleetEnv(root, receiver, '2'))
    const [s0, s1, s2] = servers as [CliServer, CliServer, CliServer]
    const ledger = await openLedger(t, prefix)

    // uid → [server, path, range?]. Each uid reaches the threshold, if at
    // all, only with its last request, so a qualified uid's whole usage is
    // in one report whatever windows its requests fell into.
    const plan: Array<[string, CliServer, string, string?]> = [
      ['solo-big', s0, '/big.mp4'], // 2 MiB on one instance: qualifies alone
      ['spread', s0, '/seg.ts'], ['spread', s1, '/seg.ts'], ['spread', s2, '/seg.ts'], // 3 × 400 KiB: only the sum qualifies
      ['spread-small', s0, '/small.m4s'], ['spread-small', s1, '/small.m4s'], ['spread-small', s2, '/small.m4s'], // 300 KiB: stays pending
      ['alone-small', s1, '/clip.mp4'], // 500 KiB: stays pending
      ['pair', s1, '/movie.mp4', 'bytes=0-614399'], ['pair', s2, '/movie.mp4', 'bytes=0-614399'] // two 206 of 600 KiB: qualifies
    ]
    const received = new Map<string, number>()
    const fetchAll = async (list: typeof plan): Promise<void> => {
      // Requests of different uids run in parallel; one uid's in order.
      const byUid = new Map<string, typeof plan>()
      for (const item of list) byUid.set(item[0], [...(byUid.get(item[0]) ?? []), item])
      await Promise.all([...byUid.values()].map(async (requests) => {
        for (const [uid, server, path, range] of requests) {
          const got = await download(server, `${path}?uid=${uid}`, range === undefined ? {} : { range })
          assert.equal(got.status, range === undefined ? 200 : 206, `${uid} ${path}`)
          received.set(uid, (received.get(uid) ?? 0) + got.bytes)
        }
      }))
    }
    await fetchAll(plan)
    assert.deepEqual(Object.fromEntries(received), {
      'solo-big': 2097152, spread: 1228800, 'spread-small': 307200, 'alone-small': 512000, pair: 1228800
    })

    // Before stopping: every instance has flushed; what is below the
    // threshold is exactly the two small uids, whichever instance answers.
    await waitFor(async () => {
      const all = await Promise.all(servers.map(trafficOf))
      return all.every((s) => s.current_traffic_summary.unflushed_bytes === 0 && s.current_traffic_summary.pending_bytes === 819200)
    }, 5000, 'everything flushed')
    const before = await trafficOf(s2)
    assert.equal(before.current_state.pending_accumulator_uids, 2)
    assert.equal(before.current_traffic_summary.pending_bytes, 307200 + 512000)

    // Stop the reporter first, so that the lease moves; then the others one
    // by one. After each stop, every byte received is delivered, in the
    // outbox, or in a record: the stopped instance left nothing behind.
    const reporterIndex = await (async () => {
      let index = -1
      await waitFor(async () => {
        const states = await Promise.all(servers.map(trafficOf))
        const reporters = states.flatMap((s, i) => s.current_state.is_reporter ? [i] : [])
        index = reporters.length === 1 ? reporters[0]! : -1
        return index >= 0
      }, 5000, 'one reporter')
      return index
    })()
    const order = [reporterIndex, ...[0, 1, 2].filter((i) => i !== reporterIndex)]
    // Bytes in records, in the outbox, or at the receiver (a report both in
    // the outbox and received, i.e. not acknowledged yet, counts once). The
    // reads are not one snapshot: a seal or a delivery by the remaining
    // reporter between them is seen by the next read.
    const accountedFor = async (): Promise<number> => {
      let sum = 0
      for (const r of await ledger.records()) sum += r.bytes
      const inOutbox = new Set<string>()
      for (const e of await ledger.outbox()) {
        inOutbox.add(e.reportId)
        sum += e.bytes
      }
      for (const report of receiver.reports) {
        if (inOutbox.has(String(report.report_id))) continue
        for (const d of report.traffic_details as Array<{ total_bytes: number }>) sum += d.total_bytes
      }
      return sum
    }
    for (const [step, i] of order.entries()) {
      const server = servers[i]!
      if (step === 2) {
        // The last instance gets a new qualifying uid just before it stops:
        // whether a timer seal or its final seal takes it, it must be delivered.
        await fetchAll([['last-minute', server, '/late.ts']])
      }
      assert.equal(await stopGracefully(server), 0, server.output())
      let seen = 0
      await waitFor(async () => (seen = await accountedFor()) === total(received), 3000).catch(() => {
        assert.equal(seen, total(received), `bytes accounted for after stopping instance ${i} (step ${step + 1})`)
      })
    }

    // All stopped. The outbox was delivered, the accumulator holds exactly
    // the sub-threshold uids, and the receiver holds the qualified ones,
    // each once, with exactly the bytes their clients received.
    assertStableBodies(receiver.requests)
    assert.equal((await ledger.outboxStats()).pending, 0, 'outbox delivered')
    const pending = new Map((await ledger.records()).map((r) => [r.uid, r.bytes] as const))
    assert.deepEqual(Object.fromEntries(pending), { 'spread-small': 307200, 'alone-small': 512000 })
    const reported = receiver.totals()
    assert.deepEqual(Object.fromEntries(reported), {
      'solo-big': 2097152, spread: 1228800, pair: 1228800, 'last-minute': 1572864
    })
    assert.deepEqual(Object.fromEntries(appearancesPerUid(receiver.reports)), {
      'solo-big': 1, spread: 1, pair: 1, 'last-minute': 1
    })
    for (const [uid, bytes] of reported) assert.ok(bytes >= THRESHOLD, `${uid} reported below the threshold`)
    assert.equal(total(reported) + total(pending), total(received), 'reported + pending == received')
    t.diagnostic(`stop order ${order.join(',')}; ${receiver.reports.length} reports from ${new Set(receiver.reports.map((r) => r.worker_id)).size} sealers, ${receiver.requests.length} POSTs`)
    const counters = await ledger.counters()
    assert.equal(counters.bytes_discarded, 0)
    assert.equal(counters.total_bytes_reported, total(reported))
  })
})
