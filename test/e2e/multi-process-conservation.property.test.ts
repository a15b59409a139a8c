import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import type { ChildProcessWithoutNullStreams } from 'node:child_process'
import { createInterface } from 'node:readline'
import { it } from 'node:test'
import fc from 'fast-check'
import { TrafficCollector, policyOf, resolveMeterOptions } from '../../src/meter/index.ts'
import type { MeterOptions } from '../../src/meter/index.ts'
import { RedisStore } from '../../src/store/redis-store.ts'
import type { ChildCommand, FromChild, ToChild } from '../fixtures/redis-meter-child.ts'
import { addReportBytes } from '../helpers/report-bytes.ts'
import { REDIS_URL, deletePrefix, redisOrSkip, uniquePrefix } from '../helpers/redis.ts'

/**
 * Several processes meter into one Redis ledger, flush and force seals at
 * random moments, while the parent forces seals of its own and the lease
 * holder seals when windows are due. Afterwards every recorded byte is in
 * exactly one place: an outbox report or a record. Nothing is lost, nothing
 * counted twice, whatever the interleaving of flushes and seals.
 */

const child = new URL('../fixtures/redis-meter-child.ts', import.meta.url).pathname
const TYPES = ['ts', 'm3u8', 'mp4', 'key']

/** A long-lived metering process, reused by every run. */
class MeterProcess {
  readonly proc: ChildProcessWithoutNullStreams
  #inbox: FromChild[] = []
  #waiting: Array<(msg: FromChild) => void> = []
  #stderr = ''

  constructor () {
    this.proc = spawn(process.execPath, ['--import', 'tsx', child], { stdio: ['pipe', 'pipe', 'pipe'] })
    this.proc.stderr.on('data', (c: Buffer) => { this.#stderr += c.toString() })
    createInterface({ input: this.proc.stdout }).on('line', (line) => {
      const msg = JSON.parse(line) as FromChild
      const waiter = this.#waiting.shift()
      if (waiter !== undefined) waiter(msg)
      else this.#inbox.push(msg)
    })
  }

  send (msg: ToChild): void {
    this.proc.stdin.write(JSON.stringify(msg) + '\n')
  }

  /** The next message; fails on an `error` message or after `timeoutMs`. */
  async next (timeoutMs = 15_000): Promise<FromChild> {
    const queued = this.#inbox.shift()
    const msg = queued ?? await new Promise<FromChild>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer from the metering process in ${timeoutMs} ms:\n${this.#stderr}`)), timeoutMs)
      this.#waiting.push((m) => {
        clearTimeout(timer)
        resolve(m)
      })
    })
    if (msg.type === 'error') throw new Error(`metering process failed: ${msg.message}`)
    return msg
  }

  async stop (): Promise<void> {
    if (this.proc.exitCode !== null) return
    const exited = new Promise<void>((resolve) => this.proc.once('close', () => resolve()))
    this.proc.stdin.end()
    await exited
  }
}

const commandArb: fc.Arbitrary<ChildCommand> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('record' as const),
      uid: fc.nat(5).map((n) => `u${n}`),
      bytes: fc.integer({ min: 1, max: 900 }),
      fileType: fc.constantFrom(...TYPES)
    })
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('pause' as const), ms: fc.integer({ min: 0, max: 25 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('flush' as const) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('seal' as const) }) }
)

const scenarioArb = fc.record({
  processes: fc.integer({ min: 2, max: 3 }),
  minBytes: fc.constantFrom(0, 700, 2500),
  reportInterval: fc.constantFrom(0.15, 0.4),
  reportMaxUids: fc.integer({ min: 1, max: 4 }),
  commands: fc.array(fc.array(commandArb, { minLength: 1, maxLength: 60 }), { minLength: 3, maxLength: 3 }),
  parentSeals: fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 4 })
})

it('many processes, one Redis ledger, random flushes and seals: outbox + records == recorded, per uid', async (t) => {
  if (!await redisOrSkip(t)) return
  const processes = [new MeterProcess(), new MeterProcess(), new MeterProcess()]
  t.after(() => Promise.all(processes.map((p) => p.stop())))
  let runs = 0
  let reports = 0
  let windowsSealed = 0
  let childSeals = 0
  let fenced = 0

  await fc.assert(fc.asyncProperty(scenarioArb, async (s) => {
    runs++
    const prefix = uniquePrefix('multi-process')
    const options: Partial<MeterOptions> = {
      minBytes: s.minBytes,
      accumulatorTimeout: 3600, // no expiry: every byte is reported or still accumulating
      reportInterval: s.reportInterval,
      flushInterval: 0.05,
      reportMaxUids: s.reportMaxUids
    }
    const meter = resolveMeterOptions({ ...options, workerId: 'parent' })
    const ledger = await RedisStore.open(REDIS_URL, policyOf(meter), { prefix })
    const sealer = new TrafficCollector(meter, { store: ledger }) // not started: only the seals below
    try {
      const team = processes.slice(0, s.processes)
      team.forEach((p, i) => p.send({ type: 'run', prefix, name: `p${i}`, options, commands: s.commands[i]! }))
      for (const p of team) assert.equal((await p.next()).type, 'ready')
      for (const p of team) p.send({ type: 'go' })
      const parentSeals = Promise.all(s.parentSeals.map(async (ms) => {
        await new Promise((resolve) => setTimeout(resolve, ms))
        await sealer.seal({ force: true })
      }))
      const done = await Promise.all(team.map(async (p) => await p.next() as Extract<FromChild, { type: 'done' }>))
      await parentSeals

      // What the processes recorded, as the commands say and as they counted it.
      const recorded = new Map<string, number>()
      for (const [i, d] of done.entries()) {
        assert.equal(d.type, 'done')
        assert.equal(d.bytesAfterClose, 0, `p${i} recorded bytes after its final flush`)
        assert.equal(d.eventsIgnored, 0)
        let sum = 0
        for (const c of s.commands[i]!) if (c.kind === 'record') sum += c.bytes
        assert.equal(d.bytesRecorded, sum, `p${i} counted what it was given`)
        for (const [uid, bytes] of Object.entries(d.recorded)) recorded.set(uid, (recorded.get(uid) ?? 0) + bytes)
      }

      // The last closer may not have been the reporter: a final seal takes
      // whatever qualified after the reporter's last window.
      await sealer.seal({ force: true })

      const outbox = await ledger.outbox()
      const inReports = new Map<string, number>()
      const windows = new Map<string, Set<string>>()
      for (const entry of outbox) {
        const body = JSON.parse(entry.body) as { report_id: string, window_id: string, traffic_details: Array<{ uid: string, total_bytes: number }> }
        assert.equal(body.report_id, entry.reportId)
        const own = addReportBytes(new Map(), body)
        assert.equal([...own.values()].reduce((a, b) => a + b, 0), entry.bytes, `report ${entry.reportId}: bytes field == body`)
        assert.equal(own.size, entry.uids)
        const uids = windows.get(body.window_id) ?? new Set<string>()
        windows.set(body.window_id, uids)
        for (const d of body.traffic_details) {
          assert.ok(!uids.has(d.uid), `uid ${d.uid} twice in window ${body.window_id}`)
          uids.add(d.uid)
          assert.ok(d.total_bytes >= s.minBytes, `uid ${d.uid} reported with ${d.total_bytes} < ${s.minBytes} bytes`)
        }
        addReportBytes(inReports, body)
      }
      assert.equal(new Set(outbox.map((e) => e.reportId)).size, outbox.length, 'report ids are unique')

      const records = await ledger.records()
      assert.equal(new Set(records.map((r) => r.uid)).size, records.length, 'no seal left half-done (staged records)')
      const inRecords = new Map<string, number>()
      for (const r of records) {
        assert.ok(!r.qualified && r.bytes < s.minBytes, `uid ${r.uid}: ${r.bytes} bytes left after the final seal`)
        inRecords.set(r.uid, r.bytes)
      }

      for (const uid of new Set([...recorded.keys(), ...inReports.keys(), ...inRecords.keys()])) {
        const got = (inReports.get(uid) ?? 0) + (inRecords.get(uid) ?? 0)
        assert.equal(got, recorded.get(uid) ?? 0,
          `uid ${uid}: reports ${inReports.get(uid) ?? 0} + records ${inRecords.get(uid) ?? 0} != recorded ${recorded.get(uid) ?? 0}`)
      }

      // The store's running totals agree with its contents.
      const counters = await ledger.counters()
      assert.equal(counters.bytes_discarded, 0)
      assert.equal(counters.reports_created, outbox.length)
      assert.equal(counters.windows_sealed, windows.size)
      const summary = await ledger.summary(0)
      assert.equal(summary.qualifiedUids, 0)
      assert.equal(summary.pendingUids, records.length)
      assert.equal(summary.pendingBytes, records.reduce((a, r) => a + r.bytes, 0))
      reports += outbox.length
      windowsSealed += windows.size
      childSeals += done.reduce((a, d) => a + d.seals, 0)
      fenced += done.reduce((a, d) => a + d.fenced, 0)
      const stats = await ledger.outboxStats()
      assert.equal(stats.pending, outbox.length)
      assert.equal(stats.pendingBytes, outbox.reduce((a, e) => a + e.bytes, 0))
    } finally {
      await sealer.close({ grace: 0.1 }).catch(() => {})
      await ledger.close()
      await deletePrefix(prefix)
    }
  }), { numRuns: 20 })
  t.diagnostic(`${runs} runs: ${windowsSealed} windows in ${reports} reports; ${childSeals} forced seals by the processes went through, ${fenced} were fenced`)
})
