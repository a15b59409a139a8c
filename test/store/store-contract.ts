/**
 * The one contract every UsageStore meets (docs/metering.md and
 * docs/report-format.md). A store's test file calls
 * `storeContract(kind, factory)`; every case asserts exact values, so two
 * stores that pass agree byte for byte.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { emptyCounters } from '../../src/meter/index.ts'
import { outboxContract } from './store-contract-outbox.ts'
import type {
  OutboxEntry, RenderedReport, StoreCounters, UsageDelta, UsagePolicy, UsageRecord, UsageStore
} from '../../src/meter/index.ts'

/** How the contract gets stores. */
export interface StoreFactory {
  /**
   * A fresh, empty store applying `policy`. The factory cleans up what it
   * created (files, keys) in `t.after`; the suite closes the store itself too.
   */
  create (t: TestContext, policy: UsagePolicy): Promise<UsageStore>
  /**
   * A second store over the same data as `store` (same file, same key
   * prefix…), as a restarted process or another instance would open it.
   * `store` may be open or closed. Absent when the data cannot outlive the
   * store object (`memory:`); the persistence cases are then not registered.
   */
  reopen?: ((t: TestContext, store: UsageStore) => Promise<UsageStore>) | undefined
}

const T0 = 1_700_000_000_000
const POLICY: UsagePolicy = { minBytes: 1000, accumulatorTimeoutMs: 10_000, maxIps: 3, maxSessions: 2 }
/** A delta of `bytes` for `uid`, one request of type `ts` at T0 unless told otherwise. */
function delta (uid: string, bytes: number, more: Partial<UsageDelta> = {}): UsageDelta {
  return {
    uid,
    bytes,
    requests: 1,
    fileTypes: { ts: bytes },
    ips: [],
    sessions: [],
    firstSeen: T0,
    lastSeen: T0,
    ...more
  }
}

/** A record as the store should hold it. */
function record (uid: string, bytes: number, more: Partial<UsageRecord> = {}): UsageRecord {
  return {
    uid,
    bytes,
    requests: 1,
    fileTypes: { ts: bytes },
    ips: [],
    sessions: [],
    startTime: T0,
    lastActivity: T0,
    qualified: bytes >= POLICY.minBytes,
    ...more
  }
}

function counters (more: Partial<StoreCounters>): StoreCounters {
  return { ...emptyCounters(), ...more }
}

function byUid<T extends { uid: string }> (items: readonly T[]): T[] {
  return [...items].sort((a, b) => (a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0))
}

/** The body the test renderer writes: deterministic, so stores can be compared on it. */
function bodyOf (sealedAt: number, records: ReadonlyArray<Pick<UsageRecord, 'uid' | 'bytes' | 'requests'>>): string {
  return JSON.stringify({ sealedAt, traffic: records.map((r) => ({ uid: r.uid, bytes: r.bytes, requests: r.requests })) })
}

/**
 * A pure renderer that splits reports into parts of `partSize` uids and
 * numbers them `${prefix}-1`, `${prefix}-2`… It logs every call.
 */
function renderer (partSize = Infinity, prefix = 'report') {
  let n = 0
  const calls: Array<{ uids: string[], sealedAt: number }> = []
  const render = (records: readonly UsageRecord[], sealedAt: number): RenderedReport[] => {
    calls.push({ uids: records.map((r) => r.uid), sealedAt })
    const out: RenderedReport[] = []
    for (let i = 0; i < records.length; i += partSize) {
      const part = records.slice(i, i + partSize)
      out.push({
        reportId: `${prefix}-${++n}`,
        body: bodyOf(sealedAt, part),
        uids: part.length,
        bytes: part.reduce((sum, r) => sum + r.bytes, 0)
      })
    }
    return out
  }
  return { render, calls }
}

/** An outbox entry as the store should hold it before any attempt. */
function entry (reportId: string, createdAt: number, records: ReadonlyArray<Pick<UsageRecord, 'uid' | 'bytes' | 'requests'>>, seq: number): OutboxEntry {
  return {
    seq,
    reportId,
    createdAt,
    body: bodyOf(createdAt, records),
    uids: records.length,
    bytes: records.reduce((sum, r) => sum + r.bytes, 0),
    attempts: 0
  }
}

/** Seqs are store-assigned; the contract fixes only their order. */
function assertIncreasing (entries: readonly OutboxEntry[]): void {
  for (let i = 1; i < entries.length; i++) {
    assert.ok((entries[i]?.seq ?? 0) > (entries[i - 1]?.seq ?? 0), `seq ${i} increases`)
  }
}

/** Register the contract suite for one store kind. `name` is the store's `kind`. */
export function storeContract (name: string, factory: StoreFactory): void {
  async function open (t: TestContext, policy: UsagePolicy = POLICY): Promise<UsageStore> {
    const store = await factory.create(t, policy)
    t.after(() => store.close())
    return store
  }

  async function reopen (t: TestContext, store: UsageStore): Promise<UsageStore> {
    assert.ok(factory.reopen)
    const again = await factory.reopen(t, store)
    t.after(() => again.close())
    return again
  }

  /** Start a window (the first seal only schedules) at `now`, due `interval` later. */
  async function schedule (store: UsageStore, now = T0, intervalMs = 300_000): Promise<void> {
    const first = await store.seal({ now, intervalMs, render: renderer().render })
    assert.deepEqual(first, { sealed: false, reports: [], nextSealAt: now + intervalMs })
  }

  describe(`${name} store contract`, () => {
    it('exposes its kind and the policy it applies', async (t) => {
      const store = await open(t)
      assert.equal(store.kind, name)
      assert.deepEqual({ ...store.policy }, POLICY)
    })

    describe('flush', () => {
      it('creates a record per new uid with the values of its delta', async (t) => {
        const store = await open(t)
        const result = await store.flush([
          delta('a', 400, { requests: 2, fileTypes: { m3u8: 100, ts: 300 }, ips: ['10.0.0.1'], sessions: ['s1'], lastSeen: T0 + 50 }),
          delta('b', 1500)
        ])
        assert.deepEqual(result, { uids: 2, created: 2, qualified: 1, discarded: [] })
        assert.deepEqual(byUid(await store.records()), [
          record('a', 400, { requests: 2, fileTypes: { m3u8: 100, ts: 300 }, ips: ['10.0.0.1'], sessions: ['s1'], lastActivity: T0 + 50 }),
          record('b', 1500, { qualified: true })
        ])
        assert.deepEqual(await store.counters(), counters({ total_recorded_uids: 2 }))
      })

      it('sums bytes, requests and bytes per file type across flushes', async (t) => {
        const store = await open(t)
        await store.flush([delta('a', 100, { fileTypes: { m3u8: 100 } })])
        const result = await store.flush([delta('a', 250, { requests: 3, fileTypes: { ts: 200, m3u8: 50 } })])
        assert.deepEqual(result, { uids: 1, created: 0, qualified: 0, discarded: [] })
        assert.deepEqual(await store.records(), [record('a', 350, { requests: 4, fileTypes: { m3u8: 150, ts: 200 } })])
        assert.deepEqual(await store.counters(), counters({ total_recorded_uids: 1 }))
      })

      it('merges several deltas for one uid within one batch', async (t) => {
        const store = await open(t)
        const result = await store.flush([delta('a', 600), delta('a', 600, { firstSeen: T0 + 5, lastSeen: T0 + 9 })])
        assert.deepEqual(result, { uids: 2, created: 1, qualified: 1, discarded: [] })
        assert.deepEqual(await store.records(), [record('a', 1200, { requests: 2, lastActivity: T0 + 9 })])
        assert.deepEqual(await store.counters(), counters({ total_recorded_uids: 1 }))
      })

      it('unions ips and sessions in first-seen order, capped at maxIps and maxSessions', async (t) => {
        const store = await open(t)
        await store.flush([delta('a', 10, { ips: ['ip1', 'ip2'], sessions: ['s1'] })])
        await store.flush([delta('a', 10, { ips: ['ip2', 'ip3', 'ip4', 'ip5'], sessions: ['s1', 's2', 's3'] })])
        await store.flush([delta('b', 10, { ips: ['x1', 'x2', 'x3', 'x4'], sessions: ['t1', 't2', 't3'] })])
        const [a, b] = byUid(await store.records())
        assert.deepEqual(a?.ips, ['ip1', 'ip2', 'ip3'])
        assert.deepEqual(a?.sessions, ['s1', 's2'])
        assert.deepEqual(b?.ips, ['x1', 'x2', 'x3'])
        assert.deepEqual(b?.sessions, ['t1', 't2'])
      })

      it('keeps the earliest first byte and the latest activity, whatever the flush order', async (t) => {
        const store = await open(t)
        await store.flush([delta('a', 10, { firstSeen: T0 + 1000, lastSeen: T0 + 2000 })])
        await store.flush([delta('a', 10, { firstSeen: T0 + 500, lastSeen: T0 + 1500 })])
        await store.flush([delta('a', 10, { firstSeen: T0 + 1200, lastSeen: T0 + 3000 })])
        const [a] = await store.records()
        assert.equal(a?.startTime, T0 + 500)
        assert.equal(a?.lastActivity, T0 + 3000)
      })

      it('applies the threshold to the sum of all flushes (two instances, half the bytes each)', async (t) => {
        const store = await open(t)
        const first = await store.flush([delta('a', 500, { ips: ['ip-instance-1'] })])
        assert.deepEqual(first, { uids: 1, created: 1, qualified: 0, discarded: [] })
        assert.equal((await store.records())[0]?.qualified, false)
        const second = await store.flush([delta('a', 500, { ips: ['ip-instance-2'], firstSeen: T0 + 1, lastSeen: T0 + 1 })])
        assert.deepEqual(second, { uids: 1, created: 0, qualified: 1, discarded: [] })
        assert.deepEqual(await store.records(), [
          record('a', 1000, { requests: 2, ips: ['ip-instance-1', 'ip-instance-2'], lastActivity: T0 + 1, qualified: true })
        ])
      })

      it('counts a crossing once: a qualified record stays qualified', async (t) => {
        const store = await open(t)
        assert.equal((await store.flush([delta('a', 1000)])).qualified, 1)
        assert.equal((await store.flush([delta('a', 1)])).qualified, 0)
        assert.deepEqual(await store.records(), [record('a', 1001, { requests: 2, fileTypes: { ts: 1001 }, qualified: true })])
      })

      it('with minBytes 0 qualifies every byte and never discards', async (t) => {
        const store = await open(t, { ...POLICY, minBytes: 0 })
        assert.deepEqual(await store.flush([delta('a', 1)]), { uids: 1, created: 1, qualified: 1, discarded: [] })
        assert.deepEqual(await store.expire(T0 + 1_000_000), { discarded: [] })
        const late = await store.flush([delta('a', 2, { firstSeen: T0 + 1_000_000, lastSeen: T0 + 1_000_000 })])
        assert.deepEqual(late, { uids: 1, created: 0, qualified: 0, discarded: [] })
        assert.deepEqual(await store.records(), [
          record('a', 3, { requests: 2, fileTypes: { ts: 3 }, lastActivity: T0 + 1_000_000, qualified: true })
        ])
        assert.deepEqual(await store.counters(), counters({ total_recorded_uids: 1 }))
      })

      it('an empty batch changes nothing', async (t) => {
        const store = await open(t)
        assert.deepEqual(await store.flush([]), { uids: 0, created: 0, qualified: 0, discarded: [] })
        assert.deepEqual(await store.records(), [])
        assert.deepEqual(await store.counters(), emptyCounters())
      })
    })

    describe('expiry', () => {
      it('expire discards sub-threshold cycles older than the timeout and counts them', async (t) => {
        const store = await open(t)
        await store.flush([delta('old', 300), delta('older', 200, { firstSeen: T0 - 1, lastSeen: T0 - 1 })])
        await store.flush([delta('young', 100, { firstSeen: T0 + 5000, lastSeen: T0 + 5000 })])
        // Exactly the timeout is not "longer ago than the timeout".
        assert.deepEqual(await store.expire(T0 + 9_999), { discarded: [] })
        assert.deepEqual((await store.expire(T0 + 10_000)).discarded, [{ uid: 'older', bytes: 200, startTime: T0 - 1 }])
        assert.deepEqual((await store.expire(T0 + 10_001)).discarded, [{ uid: 'old', bytes: 300, startTime: T0 }])
        assert.deepEqual(await store.records(), [record('young', 100, { startTime: T0 + 5000, lastActivity: T0 + 5000 })])
        assert.deepEqual(await store.counters(), counters({ total_recorded_uids: 3, accumulator_cleanups: 2, bytes_discarded: 500 }))
      })

      it('expire never discards a qualified record', async (t) => {
        const store = await open(t)
        await store.flush([delta('q', 5000), delta('p', 999)])
        const result = await store.expire(T0 + 1_000_000)
        assert.deepEqual(result, { discarded: [{ uid: 'p', bytes: 999, startTime: T0 }] })
        assert.deepEqual(await store.records(), [record('q', 5000)])
        assert.deepEqual(await store.counters(), counters({ total_recorded_uids: 2, accumulator_cleanups: 1, bytes_discarded: 999 }))
      })

      it('a delta that begins after the timeout discards the old cycle and starts a new one', async (t) => {
        const store = await open(t)
        await store.flush([delta('a', 500, { ips: ['old-ip'] })])
        const late = T0 + 10_001
        const result = await store.flush([delta('a', 300, { ips: ['new-ip'], firstSeen: late, lastSeen: late + 5 })])
        assert.deepEqual(result, { uids: 1, created: 1, qualified: 0, discarded: [{ uid: 'a', bytes: 500, startTime: T0 }] })
        assert.deepEqual(await store.records(), [record('a', 300, { ips: ['new-ip'], startTime: late, lastActivity: late + 5 })])
        assert.deepEqual(await store.counters(), counters({ total_recorded_uids: 2, accumulator_cleanups: 1, bytes_discarded: 500 }))
      })

      it('a delta that begins exactly at the timeout still joins the cycle', async (t) => {
        const store = await open(t)
        await store.flush([delta('a', 500)])
        const result = await store.flush([delta('a', 500, { firstSeen: T0 + 10_000, lastSeen: T0 + 10_000 })])
        assert.deepEqual(result, { uids: 1, created: 0, qualified: 1, discarded: [] })
        assert.deepEqual(await store.records(), [record('a', 1000, { requests: 2, lastActivity: T0 + 10_000, qualified: true })])
      })

      it('a late delta joins a qualified record whatever its age', async (t) => {
        const store = await open(t)
        await store.flush([delta('a', 1000)])
        const result = await store.flush([delta('a', 5, { firstSeen: T0 + 1_000_000, lastSeen: T0 + 1_000_000 })])
        assert.deepEqual(result, { uids: 1, created: 0, qualified: 0, discarded: [] })
        assert.deepEqual(await store.records(), [
          record('a', 1005, { requests: 2, fileTypes: { ts: 1005 }, lastActivity: T0 + 1_000_000, qualified: true })
        ])
        assert.deepEqual(await store.counters(), counters({ total_recorded_uids: 1 }))
      })
    })

    describe('seal', () => {
      it('the first call only schedules the first seal', async (t) => {
        const store = await open(t)
        await store.flush([delta('a', 2000)])
        assert.equal(await store.nextSealAt(), undefined)
        const { render, calls } = renderer()
        assert.deepEqual(await store.seal({ now: T0, intervalMs: 60_000, render }), { sealed: false, reports: [], nextSealAt: T0 + 60_000 })
        assert.equal(await store.nextSealAt(), T0 + 60_000)
        assert.deepEqual(calls, [])
        assert.deepEqual(await store.records(), [record('a', 2000)])
        assert.deepEqual(await store.outbox(), [])
      })

      it('a seal that is not due changes nothing', async (t) => {
        const store = await open(t)
        await schedule(store, T0, 60_000)
        await store.flush([delta('a', 2000)])
        const { render, calls } = renderer()
        assert.deepEqual(await store.seal({ now: T0 + 59_999, intervalMs: 60_000, render }), { sealed: false, reports: [], nextSealAt: T0 + 60_000 })
        // A different interval does not move a scheduled seal either.
        assert.deepEqual(await store.seal({ now: T0 + 1, intervalMs: 1, render }), { sealed: false, reports: [], nextSealAt: T0 + 60_000 })
        assert.deepEqual(calls, [])
        assert.equal(await store.nextSealAt(), T0 + 60_000)
        assert.deepEqual(await store.records(), [record('a', 2000)])
        assert.deepEqual(await store.outbox(), [])
        assert.deepEqual(await store.counters(), counters({ total_recorded_uids: 1 }))
      })

      it('a wall clock set forward seals once, and set back again never stops seals', async (t) => {
        const store = await open(t)
        const interval = 60_000
        const year = 365 * 24 * 3600_000
        await schedule(store, T0, interval)
        await store.flush([delta('a', 2000)])
        const ahead = await store.seal({ now: T0 + year, intervalMs: interval, render: renderer(Infinity, 'ahead').render })
        assert.equal(ahead.sealed, true)
        assert.deepEqual(ahead.reports.map((r) => r.reportId), ['ahead-1'])
        assert.equal(ahead.nextSealAt, T0 + year + interval)
        // Still a year ahead: one seal only.
        assert.equal((await store.seal({ now: T0 + year + 1, intervalMs: interval, render: renderer().render })).sealed, false)
        // Put right: the year-ahead schedule means nothing, the window seals now.
        const back = T0 + 61_000
        await store.flush([delta('b', 3000, { firstSeen: back, lastSeen: back })])
        const corrected = await store.seal({ now: back, intervalMs: interval, render: renderer(Infinity, 'back').render })
        assert.equal(corrected.sealed, true)
        assert.deepEqual(corrected.reports.map((r) => [r.reportId, r.bytes]), [['back-1', 3000]])
        assert.equal(corrected.nextSealAt, back + interval)
        assert.equal(await store.nextSealAt(), back + interval)
        // From there on the usual rhythm; a step back within the slack between instances' clocks waits.
        assert.equal((await store.seal({ now: back - 4000, intervalMs: interval, render: renderer().render })).sealed, false)
        assert.equal((await store.seal({ now: back + interval - 1, intervalMs: interval, render: renderer().render })).sealed, false)
        assert.equal((await store.seal({ now: back + interval, intervalMs: interval, render: renderer().render })).sealed, true)
        assert.deepEqual(await store.outbox().then((o) => o.map((e) => e.reportId)), ['ahead-1', 'back-1'])
      })

      it('a due seal moves the qualified records into the outbox and carries the others over', async (t) => {
        const store = await open(t)
        await schedule(store, T0, 60_000)
        await store.flush([
          delta('small', 999, { ips: ['ip'] }),
          delta('big', 5000, { requests: 4 }),
          delta('mid', 1000),
          delta('tie', 1000)
        ])
        const { render, calls } = renderer()
        const now = T0 + 60_000
        const result = await store.seal({ now, intervalMs: 60_000, render })
        const sealed = [{ uid: 'big', bytes: 5000, requests: 4 }, { uid: 'mid', bytes: 1000, requests: 1 }, { uid: 'tie', bytes: 1000, requests: 1 }]
        assert.equal(result.sealed, true)
        assert.equal(result.nextSealAt, now + 60_000)
        assert.equal(result.reports.length, 1)
        const expected = entry('report-1', now, sealed, result.reports[0]?.seq ?? -1)
        assert.deepEqual(result.reports, [expected])
        // Records reach render sorted by bytes descending, then uid.
        assert.deepEqual(calls, [{ uids: ['big', 'mid', 'tie'], sealedAt: now }])
        assert.deepEqual(await store.outbox(), [expected])
        assert.deepEqual(await store.outboxHead(), expected)
        assert.deepEqual(await store.records(), [record('small', 999, { ips: ['ip'] })])
        assert.equal(await store.nextSealAt(), now + 60_000)
        assert.deepEqual(await store.counters(), counters({ total_recorded_uids: 4, reports_created: 1, windows_sealed: 1 }))
      })

      it('sealed uids start a new cycle and must qualify again', async (t) => {
        const store = await open(t)
        await schedule(store)
        await store.flush([delta('a', 1500)])
        await store.seal({ now: T0 + 300_000, intervalMs: 300_000, render: renderer().render })
        const after = T0 + 300_001
        const result = await store.flush([delta('a', 400, { firstSeen: after, lastSeen: after })])
        assert.deepEqual(result, { uids: 1, created: 1, qualified: 0, discarded: [] })
        assert.deepEqual(await store.records(), [record('a', 400, { startTime: after, lastActivity: after })])
        const { render, calls } = renderer(Infinity, 'second')
        const next = await store.seal({ now: T0 + 600_000, intervalMs: 300_000, render })
        assert.deepEqual(next, { sealed: true, reports: [], nextSealAt: T0 + 900_000 })
        assert.deepEqual(calls, [])
        assert.deepEqual(await store.counters(), counters({ total_recorded_uids: 2, reports_created: 1, windows_sealed: 1 }))
      })

      it('force seals before the window is due, and on a fresh store', async (t) => {
        const fresh = await open(t)
        await fresh.flush([delta('a', 1000)])
        const first = await fresh.seal({ now: T0, intervalMs: 60_000, force: true, render: renderer().render })
        assert.equal(first.sealed, true)
        assert.deepEqual(first.reports.map((r) => r.reportId), ['report-1'])
        assert.equal(first.nextSealAt, T0 + 60_000)
        assert.deepEqual(await fresh.records(), [])

        const store = await open(t)
        await schedule(store, T0, 60_000)
        await store.flush([delta('b', 1000)])
        const forced = await store.seal({ now: T0 + 1, intervalMs: 60_000, force: true, render: renderer().render })
        assert.deepEqual(forced.reports, [entry('report-1', T0 + 1, [{ uid: 'b', bytes: 1000, requests: 1 }], forced.reports[0]?.seq ?? -1)])
        assert.equal(forced.nextSealAt, T0 + 60_001)
        assert.equal(await store.nextSealAt(), T0 + 60_001)
      })

      it('render is not called when nothing qualifies; the window is still sealed and rescheduled', async (t) => {
        const store = await open(t)
        await schedule(store, T0, 60_000)
        await store.flush([delta('a', 10)])
        const { render, calls } = renderer()
        const result = await store.seal({ now: T0 + 70_000, intervalMs: 60_000, render })
        assert.deepEqual(result, { sealed: true, reports: [], nextSealAt: T0 + 130_000 })
        assert.deepEqual(calls, [])
        assert.deepEqual(await store.records(), [record('a', 10)])
        assert.deepEqual(await store.outbox(), [])
        assert.deepEqual(await store.counters(), counters({ total_recorded_uids: 1 }))
      })

      it('a throwing render leaves records, outbox, counters and schedule unchanged', async (t) => {
        const store = await open(t)
        await schedule(store, T0, 60_000)
        await store.flush([delta('a', 2000), delta('b', 10)])
        const boom = new Error('render failed')
        await assert.rejects(store.seal({ now: T0 + 60_000, intervalMs: 60_000, render: () => { throw boom } }), (err) => err === boom)
        assert.deepEqual(byUid(await store.records()), [record('a', 2000), record('b', 10)])
        assert.deepEqual(await store.outbox(), [])
        assert.equal(await store.nextSealAt(), T0 + 60_000)
        assert.deepEqual(await store.counters(), counters({ total_recorded_uids: 2 }))
        // The window is sealed by the next attempt, with nothing lost.
        const retry = await store.seal({ now: T0 + 60_001, intervalMs: 60_000, render: renderer().render })
        assert.deepEqual(retry.reports.map((r) => [r.reportId, r.bytes]), [['report-1', 2000]])
      })

      it('a render that leaves a qualified uid out, or repeats a report id, is refused with nothing changed', async (t) => {
        const store = await open(t)
        await schedule(store, T0, 60_000)
        await store.flush([delta('a', 2000), delta('b', 3000)])
        const dropB = (records: readonly UsageRecord[]): RenderedReport[] =>
          [{ reportId: 'only-a', body: '{}', uids: 1, bytes: records.find((r) => r.uid === 'a')?.bytes ?? 0 }]
        await assert.rejects(store.seal({ now: T0 + 60_000, intervalMs: 60_000, render: dropB }), /render accounted for 1 uids/)
        const twice = (): RenderedReport[] => [
          { reportId: 'same', body: '{}', uids: 1, bytes: 3000 },
          { reportId: 'same', body: '{}', uids: 1, bytes: 2000 }
        ]
        await assert.rejects(store.seal({ now: T0 + 60_000, intervalMs: 60_000, render: twice }), /repeated a report id/)
        assert.deepEqual(byUid(await store.records()), [record('a', 2000), record('b', 3000)])
        assert.deepEqual(await store.outbox(), [])
        assert.equal(await store.nextSealAt(), T0 + 60_000)
      })

      it('multi-part renders and successive seals append to the outbox in FIFO order', async (t) => {
        const store = await open(t)
        await schedule(store, T0, 1000)
        const { render, calls } = renderer(2)
        await store.flush(['u1', 'u2', 'u3', 'u4', 'u5'].map((uid, i) => delta(uid, 1000 + i)))
        const first = await store.seal({ now: T0 + 1000, intervalMs: 1000, render })
        assert.deepEqual(first.reports.map((r) => [r.reportId, r.uids, r.bytes]), [
          ['report-1', 2, 1004 + 1003], ['report-2', 2, 1002 + 1001], ['report-3', 1, 1000]
        ])
        await store.flush([delta('u6', 7000, { firstSeen: T0 + 1500, lastSeen: T0 + 1500 })])
        const second = await store.seal({ now: T0 + 2000, intervalMs: 1000, render })
        assert.deepEqual(second.reports.map((r) => r.reportId), ['report-4'])
        assert.deepEqual(calls.map((c) => c.uids), [['u5', 'u4', 'u3', 'u2', 'u1'], ['u6']])

        const outbox = await store.outbox()
        assert.deepEqual(outbox, [...first.reports, ...second.reports])
        assertIncreasing(outbox)
        assert.deepEqual(outbox[0], entry('report-1', T0 + 1000, [
          { uid: 'u5', bytes: 1004, requests: 1 }, { uid: 'u4', bytes: 1003, requests: 1 }
        ], outbox[0]?.seq ?? -1))
        assert.deepEqual(outbox[3], entry('report-4', T0 + 2000, [{ uid: 'u6', bytes: 7000, requests: 1 }], outbox[3]?.seq ?? -1))
        assert.deepEqual(await store.counters(), counters({ total_recorded_uids: 6, reports_created: 4, windows_sealed: 2 }))

        // Acks in order walk the head through the outbox.
        for (const expected of outbox) {
          assert.deepEqual(await store.outboxHead(), expected)
          assert.equal(await store.outboxAck(expected.reportId, T0 + 3000), true)
        }
        assert.equal(await store.outboxHead(), undefined)
      })
    })

    describe('outbox', () => {
      async function withReports (t: TestContext): Promise<{ store: UsageStore, reports: OutboxEntry[] }> {
        const store = await open(t)
        await store.flush([delta('a', 3000), delta('b', 2000), delta('c', 1000)])
        const { reports } = await store.seal({ now: T0, intervalMs: 1000, force: true, render: renderer(2).render })
        assert.deepEqual(reports.map((r) => [r.reportId, r.bytes]), [['report-1', 5000], ['report-2', 1000]])
        return { store, reports }
      }

      it('ack removes a report once and counts it once', async (t) => {
        const { store, reports } = await withReports(t)
        assert.equal(await store.outboxAck('report-1', T0 + 10), true)
        assert.equal(await store.outboxAck('report-1', T0 + 20), false)
        assert.deepEqual(await store.outbox(), [reports[1]])
        assert.deepEqual(await store.counters(), counters({
          total_recorded_uids: 3, reports_created: 2, windows_sealed: 1, total_reports_sent: 1, total_bytes_reported: 5000, last_success_at: T0 + 10
        }))
      })

      it('ack of an unknown id returns false and counts nothing', async (t) => {
        const { store, reports } = await withReports(t)
        assert.equal(await store.outboxAck('nope', T0 + 10), false)
        assert.deepEqual(await store.outbox(), reports)
        assert.deepEqual(await store.counters(), counters({ total_recorded_uids: 3, reports_created: 2, windows_sealed: 1 }))
      })

      it('fail counts attempts and keeps the last error, and never changes the body', async (t) => {
        const { store, reports } = await withReports(t)
        await store.outboxFail('report-1', 'HTTP 500', T0 + 10)
        await store.outboxFail('report-1', 'timeout after 30 s', T0 + 20)
        const head = await store.outboxHead()
        assert.deepEqual(head, { ...reports[0], attempts: 2, lastError: 'timeout after 30 s', lastAttemptAt: T0 + 20 })
        assert.equal(head?.body, reports[0]?.body)
        assert.deepEqual((await store.outbox())[1], reports[1])
        assert.deepEqual(await store.counters(), counters({
          total_recorded_uids: 3, reports_created: 2, windows_sealed: 1, reports_failed: 2, last_error: 'timeout after 30 s', last_error_at: T0 + 20
        }))
        // A failed report can still be delivered, once.
        assert.equal(await store.outboxAck('report-1', T0 + 30), true)
        assert.equal((await store.counters()).total_reports_sent, 1)
      })

      it('fail of an unknown id counts nothing', async (t) => {
        const { store, reports } = await withReports(t)
        await store.outboxAck('report-1', T0 + 10)
        await store.outboxFail('report-1', 'late failure', T0 + 20)
        await store.outboxFail('nope', 'HTTP 500', T0 + 20)
        assert.deepEqual(await store.outbox(), [reports[1]])
        const c = await store.counters()
        assert.deepEqual([c.reports_failed, c.last_error, c.last_error_at], [0, '', 0])
      })

      it('outboxStats counts pending reports, their bytes and the oldest creation time', async (t) => {
        const store = await open(t)
        assert.deepEqual(await store.outboxStats(), { pending: 0, pendingBytes: 0, oldestCreatedAt: undefined, parked: 0, parkedBytes: 0 })
        await store.flush([delta('a', 3000), delta('b', 2000)])
        await store.seal({ now: T0 + 100, intervalMs: 1000, force: true, render: renderer(1).render })
        await store.flush([delta('c', 1500, { firstSeen: T0 + 200, lastSeen: T0 + 200 })])
        await store.seal({ now: T0 + 1100, intervalMs: 1000, render: renderer(1, 'w2').render })
        assert.deepEqual(await store.outboxStats(), { pending: 3, pendingBytes: 6500, oldestCreatedAt: T0 + 100, parked: 0, parkedBytes: 0 })
        await store.outboxAck('report-1', T0 + 2000)
        assert.deepEqual(await store.outboxStats(), { pending: 2, pendingBytes: 3500, oldestCreatedAt: T0 + 100, parked: 0, parkedBytes: 0 })
        await store.outboxAck('report-2', T0 + 2000)
        assert.deepEqual(await store.outboxStats(), { pending: 1, pendingBytes: 1500, oldestCreatedAt: T0 + 1100, parked: 0, parkedBytes: 0 })
        await store.outboxAck('w2-1', T0 + 2000)
        assert.deepEqual(await store.outboxStats(), { pending: 0, pendingBytes: 0, oldestCreatedAt: undefined, parked: 0, parkedBytes: 0 })
      })
    })

    outboxContract({ open, reopen: factory.reopen === undefined ? undefined : reopen })

    describe('summary', () => {
      it('counts qualified and pending uids and bytes and lists the top records by bytes, then uid', async (t) => {
        const store = await open(t)
        assert.deepEqual(await store.summary(5), { qualifiedUids: 0, pendingUids: 0, qualifiedBytes: 0, pendingBytes: 0, top: [] })
        await store.flush([delta('p1', 900), delta('q2', 2000), delta('q1', 2000), delta('p2', 100), delta('q3', 1000)])
        assert.deepEqual(await store.summary(3), {
          qualifiedUids: 3,
          pendingUids: 2,
          qualifiedBytes: 5000,
          pendingBytes: 1000,
          top: [record('q1', 2000), record('q2', 2000), record('q3', 1000)]
        })
        assert.deepEqual((await store.summary(1)).top, [record('q1', 2000)])
        assert.deepEqual((await store.summary(0)).top, [])
        assert.deepEqual((await store.summary(100)).top.map((r) => r.uid), ['q1', 'q2', 'q3', 'p1', 'p2'])
      })
    })

    describe('isolation and lifecycle', () => {
      it('returns copies: changing a returned value does not change the store', async (t) => {
        const store = await open(t)
        await store.flush([delta('a', 2000, { ips: ['ip'] })])
        const [a] = await store.records()
        assert.ok(a)
        a.bytes = 1
        a.ips.push('other')
        a.fileTypes.ts = 1
        const { top } = await store.summary(1)
        top[0]?.sessions.push('s')
        assert.deepEqual(await store.records(), [record('a', 2000, { ips: ['ip'] })])
        const { reports } = await store.seal({ now: T0, intervalMs: 1000, force: true, render: renderer().render })
        const original = reports[0]
        assert.ok(original)
        const returned = { ...original }
        original.attempts = 99
        original.body = 'changed'
        assert.deepEqual(await store.outbox(), [returned])
      })

      it('close is idempotent and every later call rejects with SM_ERR_STORE_CLOSED', async (t) => {
        const store = await open(t)
        await store.flush([delta('a', 2000)])
        await store.close()
        await store.close()
        const closed = { code: 'SM_ERR_STORE_CLOSED' }
        const calls: Array<[string, () => Promise<unknown>]> = [
          ['flush', () => store.flush([delta('b', 1)])],
          ['expire', () => store.expire(T0)],
          ['seal', () => store.seal({ now: T0, intervalMs: 1000, force: true, render: renderer().render })],
          ['nextSealAt', () => store.nextSealAt()],
          ['outboxHead', () => store.outboxHead()],
          ['outboxAck', () => store.outboxAck('report-1', T0)],
          ['outboxFail', () => store.outboxFail('report-1', 'x', T0)],
          ['outboxPark', () => store.outboxPark('report-1', 'x', T0)],
          ['outboxSplit', () => store.outboxSplit('report-1', [], 'x', T0)],
          ['outboxRetry', () => store.outboxRetry({ all: true })],
          ['outboxDrop', () => store.outboxDrop('report-1')],
          ['outboxList', () => store.outboxList()],
          ['outboxStats', () => store.outboxStats()],
          ['counters', () => store.counters()],
          ['summary', () => store.summary(1)],
          ['records', () => store.records()],
          ['outbox', () => store.outbox()]
        ]
        for (const [method, call] of calls) await assert.rejects(call(), closed, method)
        await store.close()
      })
    })

    // A store that keeps nothing beyond its object (memory:) has no persistence
    // to check: the cases are not registered for it rather than skipped.
    if (factory.reopen !== undefined) {
      describe('persistence', () => {
        it('records, outbox, counters and the schedule survive a reopen', async (t) => {
          const store = await open(t)
          await store.flush([delta('a', 3000, { ips: ['ip1'], sessions: ['s1'], fileTypes: { m3u8: 100, ts: 2900 } }), delta('b', 2000)])
          await store.seal({ now: T0, intervalMs: 60_000, force: true, render: renderer(1).render })
          await store.outboxAck('report-1', T0 + 1)
          await store.outboxFail('report-2', 'HTTP 503', T0 + 2)
          await store.flush([delta('c', 400, { ips: ['ip3'], firstSeen: T0 + 3, lastSeen: T0 + 4 }), delta('d', 1200, { firstSeen: T0 + 5, lastSeen: T0 + 5 })])
          const before = {
            records: byUid(await store.records()),
            outbox: await store.outbox(),
            counters: await store.counters(),
            nextSealAt: await store.nextSealAt(),
            stats: await store.outboxStats(),
            summary: await store.summary(10)
          }
          assert.equal(before.nextSealAt, T0 + 60_000)
          assert.equal(before.outbox.length, 1)
          assert.equal(before.outbox[0]?.attempts, 1)
          await store.close()

          const again = await reopen(t, store)
          assert.deepEqual({
            records: byUid(await again.records()),
            outbox: await again.outbox(),
            counters: await again.counters(),
            nextSealAt: await again.nextSealAt(),
            stats: await again.outboxStats(),
            summary: await again.summary(10)
          }, before)
          // And the reopened store carries on from there.
          const next = await again.seal({ now: T0 + 60_000, intervalMs: 60_000, render: renderer(Infinity, 'after').render })
          assert.deepEqual(next.reports.map((r) => [r.reportId, r.bytes]), [['after-1', 1200]])
          assertIncreasing(await again.outbox())
        })

        it('seq keeps increasing after a reopen, even when the outbox was emptied', async (t) => {
          const store = await open(t)
          await store.flush([delta('a', 1000)])
          const { reports: [first] } = await store.seal({ now: T0, intervalMs: 1000, force: true, render: renderer().render })
          assert.ok(first)
          assert.equal(await store.outboxAck(first.reportId, T0), true)
          await store.close()
          const again = await reopen(t, store)
          await again.flush([delta('a', 1000, { firstSeen: T0 + 1, lastSeen: T0 + 1 })])
          const { reports: [second] } = await again.seal({ now: T0 + 1000, intervalMs: 1000, render: renderer(Infinity, 'again').render })
          assert.ok(second)
          assert.ok(second.seq > first.seq, `${second.seq} > ${first.seq}`)
        })

        it('two open handles on the same data share the threshold, the schedule and the outbox', async (t) => {
          const one = await open(t)
          const two = await reopen(t, one)
          await schedule(one, T0, 60_000)
          assert.equal(await two.nextSealAt(), T0 + 60_000)
          assert.deepEqual(await one.flush([delta('a', 500)]), { uids: 1, created: 1, qualified: 0, discarded: [] })
          assert.deepEqual(await two.flush([delta('a', 500, { firstSeen: T0 + 1, lastSeen: T0 + 1 })]), { uids: 1, created: 0, qualified: 1, discarded: [] })
          const sealed = await two.seal({ now: T0 + 60_000, intervalMs: 60_000, render: renderer().render })
          assert.deepEqual(sealed.reports.map((r) => [r.reportId, r.bytes]), [['report-1', 1000]])
          assert.deepEqual(await one.outbox(), sealed.reports)
          // Only one of the instances gets to seal a window.
          const late = await one.seal({ now: T0 + 60_000, intervalMs: 60_000, render: renderer(Infinity, 'dup').render })
          assert.deepEqual(late, { sealed: false, reports: [], nextSealAt: T0 + 120_000 })
          assert.equal(await two.outboxAck('report-1', T0 + 60_001), true)
          assert.equal(await one.outboxAck('report-1', T0 + 60_002), false)
          assert.deepEqual(await one.counters(), counters({
            total_recorded_uids: 1, reports_created: 1, windows_sealed: 1, total_reports_sent: 1, total_bytes_reported: 1000, last_success_at: T0 + 60_001
          }))
        })
      })
    }
  })
}
