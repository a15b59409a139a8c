import assert from 'node:assert/strict'
import diagnosticsChannel from 'node:diagnostics_channel'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { Redis } from 'ioredis'
import { ManualClock, TrafficCollector, policyOf, resolveMeterOptions } from '../../src/meter/index.ts'
import type { DeliveryOutcome, OutboxEntry, ReportTransport, UsagePolicy, UsageStore } from '../../src/meter/index.ts'
import { ReportNetworkError } from '../../src/errors.ts'
import { MemoryStore, SqliteStore } from '../../src/store/index.ts'
import { RedisStore } from '../../src/store/redis-store.ts'
import { addReportBytes } from '../helpers/report-bytes.ts'
import { REDIS_URL, deletePrefix, redisOrSkip, uniquePrefix } from '../helpers/redis.ts'

/**
 * Random event streams × random delivery failures: for every uid,
 * delivered (unique report_ids) + discarded + pending == recorded.
 */

type Outcome = 'ok' | 'lost-request' | 'lost-answer' | 'conflict'

/** A receiver in the test's memory, failing as the schedule says. */
class ScheduledTransport implements ReportTransport {
  readonly received = new Map<string, string>()
  schedule: Outcome[] = []

  async send (entry: OutboxEntry): Promise<DeliveryOutcome> {
    const outcome = this.schedule.shift() ?? 'ok'
    if (outcome === 'lost-request') return { ok: false, error: new ReportNetworkError('ECONNREFUSED') }
    const previous = this.received.get(entry.reportId)
    if (previous !== undefined) assert.equal(previous, entry.body, 'a retried report must be byte-identical')
    this.received.set(entry.reportId, entry.body)
    if (outcome === 'lost-answer') return { ok: false, error: new ReportNetworkError('ECONNRESET') }
    return { ok: true, status: outcome === 'conflict' ? 409 : 200 }
  }

  async close (): Promise<void> {}
}

type Command =
  | { kind: 'record', uid: number, bytes: number, type: number, ip: number, sid: number }
  | { kind: 'advance', ms: number }
  | { kind: 'flush' }
  | { kind: 'tick' }
  | { kind: 'seal' }
  | { kind: 'deliver', outcomes: Outcome[] }

const TYPES = ['ts', 'm3u8', 'm4s', 'key']
const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('record' as const), uid: fc.nat(7), bytes: fc.integer({ min: 0, max: 700 }), type: fc.nat(3), ip: fc.nat(30), sid: fc.nat(15) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 400 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('flush' as const) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('tick' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('seal' as const) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('deliver' as const), outcomes: fc.array(fc.constantFrom<Outcome>('ok', 'lost-request', 'lost-answer', 'conflict'), { maxLength: 4 }) }) }
)

const scenario = fc.record({
  minBytes: fc.constantFrom(0, 500, 1500),
  timeoutMs: fc.constantFrom(100, 1000),
  maxUids: fc.integer({ min: 1, max: 4 }),
  commands: fc.array(command, { minLength: 1, maxLength: 80 })
})

function checkConservation (openStore: (policy: UsagePolicy) => UsageStore, numRuns: number): Promise<void> {
  return fc.assert(fc.asyncProperty(scenario, async ({ minBytes, timeoutMs, maxUids, commands }) => {
    const options = resolveMeterOptions({
      minBytes,
      accumulatorTimeout: timeoutMs / 1000,
      reportInterval: 0.5,
      reportMaxUids: maxUids,
      maxIps: 3,
      maxSessions: 2,
      workerId: 'prop'
    })
    const store = openStore(policyOf(options))
    const transport = new ScheduledTransport()
    const clock = new ManualClock()
    let n = 0
    const collector = new TrafficCollector(options, { store, transport, clock, newId: () => `r${++n}` })
    const recorded = new Map<string, number>()
    const discarded = new Map<string, number>()
    const onDiscard = (msg: unknown): void => {
      const d = msg as { uid: string, bytes: number }
      discarded.set(d.uid, (discarded.get(d.uid) ?? 0) + d.bytes)
    }
    diagnosticsChannel.subscribe('streammeter:discard', onDiscard)
    try {
      for (const c of commands) {
        switch (c.kind) {
          case 'record': {
            const uid = `u${c.uid}`
            collector.record({ uid, bytes: c.bytes, fileType: TYPES[c.type]!, ip: `10.0.0.${c.ip}`, sessionId: `s${c.sid}` })
            if (c.bytes > 0) recorded.set(uid, (recorded.get(uid) ?? 0) + c.bytes)
            break
          }
          case 'advance': clock.advance(c.ms); break
          case 'flush': await collector.flush(); break
          case 'tick': await collector.tick(); break
          case 'seal': await collector.seal({ force: true }); break
          case 'deliver':
            transport.schedule = c.outcomes.slice()
            await collector.deliverPending()
            break
        }
      }
      await collector.flush()

      const delivered = new Map<string, number>()
      for (const body of transport.received.values()) addReportBytes(delivered, body)
      const pending = new Map<string, number>()
      for (const entry of await store.outbox()) {
        // A report the receiver already has (answer lost) is delivered, not pending.
        if (!transport.received.has(entry.reportId)) addReportBytes(pending, entry.body)
      }
      for (const r of await store.records()) pending.set(r.uid, (pending.get(r.uid) ?? 0) + r.bytes)

      for (const [uid, bytes] of recorded) {
        const accounted = (delivered.get(uid) ?? 0) + (discarded.get(uid) ?? 0) + (pending.get(uid) ?? 0)
        assert.equal(accounted, bytes, `uid ${uid}: delivered ${delivered.get(uid) ?? 0} + discarded ${discarded.get(uid) ?? 0} + pending ${pending.get(uid) ?? 0} != recorded ${bytes}`)
      }
      const total = (m: Map<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0)
      assert.equal(total(delivered) + total(discarded) + total(pending), total(recorded))
      const counters = await store.counters()
      assert.equal(counters.bytes_discarded, total(discarded))
      if (minBytes === 0) assert.equal(total(discarded), 0)
    } finally {
      diagnosticsChannel.unsubscribe('streammeter:discard', onDiscard)
      await collector.close({ grace: 0.01 }).catch(() => {})
      await store.close()
    }
  }), { numRuns })
}

describe('conservation of bytes (property)', () => {
  it('memory store', async () => {
    await checkConservation((policy) => new MemoryStore(policy), 300)
  })

  it('sqlite store', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sm-prop-'))
    t.after(() => rmSync(dir, { recursive: true, force: true }))
    let i = 0
    await checkConservation((policy) => new SqliteStore(join(dir, `p${++i}.db`), policy), 100)
  })

  it('redis store', async (t) => {
    if (!await redisOrSkip(t)) return
    const prefixes: string[] = []
    t.after(async () => {
      for (const prefix of prefixes) await deletePrefix(prefix)
    })
    // A client per run: the store owns it and its close() quits it.
    await checkConservation((policy) => {
      const prefix = uniquePrefix('conservation')
      prefixes.push(prefix)
      return new RedisStore(new Redis(REDIS_URL), policy, { prefix })
    }, 50)
  })
})
