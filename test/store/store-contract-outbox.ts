/**
 * The store contract for reports the endpoint refuses for good (docs/report-format.md#refused-reports):
 * parking, splitting, putting back and dropping. Registered by
 * `storeContract` (test/store/store-contract.ts) for every store.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { emptyCounters } from '../../src/meter/index.ts'
import type { OutboxEntry, RenderedReport, StoreCounters, UsagePolicy, UsageRecord, UsageStore } from '../../src/meter/index.ts'

/** What the contract needs from `storeContract`. */
export interface OutboxContractOptions {
  open (t: TestContext, policy?: UsagePolicy): Promise<UsageStore>
  /** Absent for a store whose data ends with the object (`memory:`). */
  reopen?: ((t: TestContext, store: UsageStore) => Promise<UsageStore>) | undefined
}

const T0 = 1_700_000_000_000
/** Every byte qualifies: the reports here are made of small uids. */
const POLICY: UsagePolicy = { minBytes: 0, accumulatorTimeoutMs: 10_000, maxIps: 3, maxSessions: 2 }

/** One line per uid: what a test body holds, so that bodies can be split and summed. */
function body (lines: ReadonlyArray<[string, number]>): string {
  return JSON.stringify({ lines })
}

/** One report per record, `r-<uid>`, its body {@link body}. */
function perUid (records: readonly UsageRecord[]): RenderedReport[] {
  return records.map((r) => ({ reportId: `r-${r.uid}`, body: body([[r.uid, r.bytes]]), uids: 1, bytes: r.bytes }))
}

/** A report holding `lines`, as a split renders a part. */
function part (reportId: string, lines: Array<[string, number]>): RenderedReport {
  return { reportId, body: body(lines), uids: lines.length, bytes: lines.reduce((sum, [, b]) => sum + b, 0) }
}

/**
 * A store with one sealed window of reports, in this delivery order: `r-a`
 * (uids a1, a2; 3000 bytes), `r-b` (b; 2000), `r-c` (c1…c4; 1500) and
 * `r-d` (d; 1000).
 */
async function fourReports (open: OutboxContractOptions['open'], t: TestContext): Promise<{ store: UsageStore, reports: OutboxEntry[] }> {
  const store = await open(t, POLICY)
  const lines: Array<[string, number]> = [['a1', 1800], ['a2', 1200], ['b', 2000], ['c1', 500], ['c2', 400], ['c3', 350], ['c4', 250], ['d', 1000]]
  await store.flush(lines.map(([uid, bytes]) => ({
    uid, bytes, requests: 1, fileTypes: { ts: bytes }, ips: [], sessions: [], firstSeen: T0, lastSeen: T0
  })))
  const render = (records: readonly UsageRecord[]): RenderedReport[] => {
    const line = (uid: string): [string, number] => [uid, records.find((r) => r.uid === uid)?.bytes ?? 0]
    return [part('r-a', [line('a1'), line('a2')]), part('r-b', [line('b')]), part('r-c', ['c1', 'c2', 'c3', 'c4'].map(line)), part('r-d', [line('d')])]
  }
  const { reports } = await store.seal({ now: T0, intervalMs: 60_000, force: true, render })
  assert.deepEqual(reports.map((r) => [r.reportId, r.uids, r.bytes]), [['r-a', 2, 3000], ['r-b', 1, 2000], ['r-c', 4, 1500], ['r-d', 1, 1000]])
  return { store, reports }
}

function counters (more: Partial<StoreCounters>): StoreCounters {
  return { ...emptyCounters(), total_recorded_uids: 8, reports_created: 4, windows_sealed: 1, ...more }
}

async function order (store: UsageStore): Promise<Array<[string, boolean]>> {
  return (await store.outboxList()).map((e) => [e.reportId, e.parkedAt !== undefined])
}

/**
 * Every report written is sent, pending, parked or dropped; a split replaces
 * one report by two: `reports_created - reports_split` = the sum of those.
 */
async function assertAccounted (store: UsageStore): Promise<void> {
  const c = await store.counters()
  const s = await store.outboxStats()
  assert.equal(c.reports_created - c.reports_split, c.total_reports_sent + s.pending + s.parked + c.reports_dropped, JSON.stringify({ c, s }))
}

/** Register the cases inside a store's contract suite. */
export function outboxContract ({ open, reopen }: OutboxContractOptions): void {
  describe('refused reports', () => {
    it('fail keeps the receiver\'s status and counts refusals; a failure without a status clears it', async (t) => {
      const { store } = await fourReports(open, t)
      await store.outboxFail('r-a', 'report endpoint answered HTTP 400', T0 + 1, { status: 400, rejected: true })
      await store.outboxFail('r-a', 'report endpoint answered HTTP 503', T0 + 2, { status: 503 })
      const head = await store.outboxHead()
      assert.deepEqual([head?.attempts, head?.rejections, head?.lastStatus, head?.lastError], [2, 1, 503, 'report endpoint answered HTTP 503'])
      await store.outboxFail('r-a', 'report endpoint did not answer within 30 s', T0 + 3)
      const after = await store.outboxHead()
      assert.deepEqual([after?.attempts, after?.rejections, 'lastStatus' in (after ?? {})], [3, 1, false])
    })

    it('park takes a report out of the delivery order, keeps it whole and counts it', async (t) => {
      const { store, reports } = await fourReports(open, t)
      await store.outboxFail('r-a', 'report endpoint answered HTTP 400', T0 + 1, { status: 400, rejected: true })
      assert.equal(await store.outboxPark('r-a', 'report endpoint answered HTTP 400', T0 + 2, { status: 400 }), true)
      assert.equal((await store.outboxHead())?.reportId, 'r-b')
      assert.deepEqual(await order(store), [['r-b', false], ['r-c', false], ['r-d', false], ['r-a', true]])
      const parked = (await store.outbox()).find((e) => e.reportId === 'r-a')
      assert.deepEqual(parked, {
        ...reports[0], attempts: 2, rejections: 2, lastStatus: 400, lastError: 'report endpoint answered HTTP 400', lastAttemptAt: T0 + 2, parkedAt: T0 + 2
      })
      assert.deepEqual(await store.outboxStats(), { pending: 3, pendingBytes: 4500, oldestCreatedAt: T0, parked: 1, parkedBytes: 3000 })
      assert.deepEqual(await store.counters(), counters({
        reports_failed: 2, reports_parked: 1, last_error: 'report endpoint answered HTTP 400', last_error_at: T0 + 2
      }))
      // Parking what is not pending changes nothing.
      assert.equal(await store.outboxPark('r-a', 'again', T0 + 3), false)
      assert.equal(await store.outboxPark('nope', 'again', T0 + 3), false)
      assert.equal((await store.counters()).reports_parked, 1)
      await assertAccounted(store)
    })

    it('a parked report can still be acknowledged once (a delivery that was in flight)', async (t) => {
      const { store } = await fourReports(open, t)
      await store.outboxPark('r-b', 'report endpoint answered HTTP 400', T0 + 1, { status: 400 })
      assert.equal(await store.outboxAck('r-b', T0 + 2), true)
      assert.equal(await store.outboxAck('r-b', T0 + 3), false)
      assert.deepEqual(await store.outboxStats(), { pending: 3, pendingBytes: 5500, oldestCreatedAt: T0, parked: 0, parkedBytes: 0 })
      assert.equal((await store.counters()).total_bytes_reported, 2000)
      await assertAccounted(store)
    })

    it('split replaces a report with its parts at its place, with new seqs and its creation time', async (t) => {
      const { store, reports } = await fourReports(open, t)
      const halves = [part('r-a.1', [['a1', 1800]]), part('r-a.2', [['a2', 1200]])]
      assert.equal(await store.outboxSplit('r-a', halves, 'report endpoint answered HTTP 413', T0 + 1, { status: 413 }), true)
      const outbox = await store.outbox()
      assert.deepEqual(outbox.map((e) => e.reportId), ['r-a.1', 'r-a.2', 'r-b', 'r-c', 'r-d'])
      const [first, second] = outbox
      assert.deepEqual(first, { seq: first?.seq, reportId: 'r-a.1', createdAt: T0, body: body([['a1', 1800]]), uids: 1, bytes: 1800, attempts: 0 })
      assert.deepEqual(second, { seq: second?.seq, reportId: 'r-a.2', createdAt: T0, body: body([['a2', 1200]]), uids: 1, bytes: 1200, attempts: 0 })
      const lastSeq = Math.max(...reports.map((r) => r.seq))
      assert.ok((first?.seq ?? 0) > lastSeq && (second?.seq ?? 0) > (first?.seq ?? 0), 'new seqs, in order, never reused')
      assert.deepEqual(await store.outboxHead(), first)
      assert.deepEqual(await store.outboxStats(), { pending: 5, pendingBytes: 7500, oldestCreatedAt: T0, parked: 0, parkedBytes: 0 })
      assert.deepEqual(await store.counters(), counters({
        reports_created: 6, reports_split: 1, reports_failed: 1, last_error: 'report endpoint answered HTTP 413', last_error_at: T0 + 1
      }))
      await assertAccounted(store)
    })

    it('a split of a report that is not at the head keeps its place; halves split again keep theirs', async (t) => {
      const { store } = await fourReports(open, t)
      await store.outboxSplit('r-c', [part('c-x', [['c1', 500], ['c2', 400]]), part('c-y', [['c3', 350], ['c4', 250]])], 'HTTP 413', T0 + 1)
      await store.outboxSplit('c-x', [part('c-x1', [['c1', 500]]), part('c-x2', [['c2', 400]])], 'HTTP 413', T0 + 2)
      await store.outboxSplit('c-y', [part('c-y1', [['c3', 350]]), part('c-y2', [['c4', 250]])], 'HTTP 413', T0 + 3)
      assert.deepEqual((await order(store)).map(([id]) => id), ['r-a', 'r-b', 'c-x1', 'c-x2', 'c-y1', 'c-y2', 'r-d'])
      for (const expected of ['r-a', 'r-b', 'c-x1', 'c-x2', 'c-y1', 'c-y2', 'r-d']) {
        assert.equal((await store.outboxHead())?.reportId, expected)
        assert.equal(await store.outboxAck(expected, T0 + 4), true)
      }
      assert.equal((await store.counters()).total_bytes_reported, 7500)
      await assertAccounted(store)
    })

    it('a split that does not account for the report, or reuses an id, is refused with nothing changed', async (t) => {
      const { store } = await fourReports(open, t)
      const before = { outbox: await store.outbox(), counters: await store.counters() }
      await assert.rejects(store.outboxSplit('r-a', [part('x1', [['a1', 1800]]), part('x2', [['a2', 1199]])], 'HTTP 413', T0), /split accounted for/)
      await assert.rejects(store.outboxSplit('r-a', [part('x1', [['a1', 1800], ['a2', 1200]])], 'HTTP 413', T0), /at least two parts/)
      await assert.rejects(store.outboxSplit('r-a', [part('r-b', [['a1', 1800]]), part('x2', [['a2', 1200]])], 'HTTP 413', T0), /already in the outbox/)
      await assert.rejects(store.outboxSplit('r-a', [part('x', [['a1', 1800]]), part('x', [['a2', 1200]])], 'HTTP 413', T0), /repeated a report id/)
      assert.deepEqual({ outbox: await store.outbox(), counters: await store.counters() }, before)
      // Not pending: nothing to split.
      await store.outboxPark('r-b', 'HTTP 400', T0)
      assert.equal(await store.outboxSplit('r-b', [part('y1', [['b', 1000]]), part('y2', [['b', 1000]])], 'HTTP 413', T0), false)
      assert.equal(await store.outboxSplit('nope', [part('y1', [['b', 1000]]), part('y2', [['b', 1000]])], 'HTTP 413', T0), false)
      assert.deepEqual({ outbox: (await store.outbox()).filter((e) => e.reportId !== 'r-b'), split: (await store.counters()).reports_split },
        { outbox: before.outbox.filter((e) => e.reportId !== 'r-b'), split: 0 })
    })

    it('retry puts a parked report back at the head, same id and body, its refusals forgotten', async (t) => {
      const { store, reports } = await fourReports(open, t)
      await store.outboxPark('r-a', 'HTTP 400', T0 + 1, { status: 400 })
      await store.outboxAck('r-b', T0 + 2)
      await store.outboxPark('r-c', 'HTTP 422', T0 + 3, { status: 422 })
      assert.deepEqual(await order(store), [['r-d', false], ['r-a', true], ['r-c', true]])
      assert.deepEqual(await store.outboxRetry('r-c'), ['r-c'])
      assert.deepEqual(await order(store), [['r-c', false], ['r-d', false], ['r-a', true]])
      assert.deepEqual(await store.outboxHead(), { ...reports[2], attempts: 1, lastError: 'HTTP 422', lastStatus: 422, lastAttemptAt: T0 + 3 })
      // Nothing to put back: unknown, pending or already back.
      assert.deepEqual(await store.outboxRetry('nope'), [])
      assert.deepEqual(await store.outboxRetry('r-d'), [])
      assert.deepEqual(await store.outboxRetry('r-c'), [])
      assert.deepEqual(await order(store), [['r-c', false], ['r-d', false], ['r-a', true]])
      assert.deepEqual(await store.outboxStats(), { pending: 2, pendingBytes: 2500, oldestCreatedAt: T0, parked: 1, parkedBytes: 3000 })
      await assertAccounted(store)
    })

    it('retry of all puts every parked report back at the head, oldest first', async (t) => {
      const { store, reports } = await fourReports(open, t)
      await store.outboxPark('r-a', 'HTTP 400', T0 + 1, { status: 400 })
      await store.outboxPark('r-c', 'HTTP 400', T0 + 1, { status: 400 })
      await store.outboxPark('r-b', 'HTTP 400', T0 + 1, { status: 400 })
      assert.deepEqual(await store.outboxRetry({ all: true }), ['r-a', 'r-b', 'r-c'])
      assert.deepEqual(await order(store), [['r-a', false], ['r-b', false], ['r-c', false], ['r-d', false]])
      const bodies = (await store.outbox()).map((e) => e.body)
      assert.deepEqual(bodies, reports.map((r) => r.body))
      assert.deepEqual(await store.outboxRetry({ all: true }), [])
      assert.deepEqual(await store.outboxStats(), { pending: 4, pendingBytes: 7500, oldestCreatedAt: T0, parked: 0, parkedBytes: 0 })
    })

    it('drop deletes a parked report for good and counts it; a pending one only with force', async (t) => {
      const { store, reports } = await fourReports(open, t)
      await store.outboxPark('r-b', 'HTTP 400', T0 + 1, { status: 400 })
      const { body: _, ...rest } = reports[1] as OutboxEntry
      assert.deepEqual(await store.outboxDrop('r-b'), {
        ...rest, bodyBytes: Buffer.byteLength(reports[1]?.body ?? ''), attempts: 1, rejections: 1, lastStatus: 400, lastError: 'HTTP 400', lastAttemptAt: T0 + 1, parkedAt: T0 + 1
      })
      assert.equal(await store.outboxDrop('r-b'), 'unknown')
      assert.equal(await store.outboxDrop('r-c'), 'not-parked')
      assert.deepEqual(await order(store), [['r-a', false], ['r-c', false], ['r-d', false]])
      const forced = await store.outboxDrop('r-c', { force: true })
      assert.equal(typeof forced === 'object' && forced.reportId, 'r-c')
      assert.deepEqual(await order(store), [['r-a', false], ['r-d', false]])
      const c = await store.counters()
      assert.deepEqual([c.reports_dropped, c.reports_dropped_bytes, c.total_reports_sent], [2, 3500, 0])
      assert.deepEqual(await store.outboxStats(), { pending: 2, pendingBytes: 4000, oldestCreatedAt: T0, parked: 0, parkedBytes: 0 })
      await assertAccounted(store)
    })

    it('outboxList holds every entry without its body, with the body\'s size in UTF-8 bytes', async (t) => {
      const store = await open(t)
      await store.flush([{ uid: 'zoë-😀', bytes: 5000, requests: 1, fileTypes: { ts: 5000 }, ips: [], sessions: [], firstSeen: T0, lastSeen: T0 }])
      const { reports: [report] } = await store.seal({ now: T0, intervalMs: 1000, force: true, render: perUid })
      assert.ok(report)
      const [item] = await store.outboxList()
      const { body: text, ...rest } = report
      assert.deepEqual(item, { ...rest, bodyBytes: Buffer.byteLength(text) })
      assert.ok((item?.bodyBytes ?? 0) > text.length, 'bytes, not UTF-16 units')
    })

    if (reopen !== undefined) {
      it('parked reports, refusals, statuses and the order after splits and retries survive a reopen', async (t) => {
        const { store } = await fourReports(open, t)
        await store.outboxFail('r-d', 'HTTP 400', T0 + 1, { status: 400, rejected: true })
        await store.outboxPark('r-b', 'HTTP 400', T0 + 1, { status: 400 })
        await store.outboxPark('r-c', 'HTTP 400', T0 + 2, { status: 400 })
        await store.outboxSplit('r-a', [part('r-a.1', [['a1', 1800]]), part('r-a.2', [['a2', 1200]])], 'HTTP 413', T0 + 3, { status: 413 })
        await store.outboxRetry('r-c')
        const before = { outbox: await store.outbox(), list: await store.outboxList(), stats: await store.outboxStats(), counters: await store.counters() }
        assert.deepEqual(before.list.map((e) => e.reportId), ['r-c', 'r-a.1', 'r-a.2', 'r-d', 'r-b'])
        await store.close()
        const again = await reopen(t, store)
        assert.deepEqual({ outbox: await again.outbox(), list: await again.outboxList(), stats: await again.outboxStats(), counters: await again.counters() }, before)
        assert.equal((await again.outboxHead())?.reportId, 'r-c')
        // And it carries on from there.
        await again.outboxSplit('r-c', [part('r-c.1', [['c1', 500], ['c2', 400], ['c3', 350]]), part('r-c.2', [['c4', 250]])], 'HTTP 413', T0 + 4)
        assert.deepEqual((await again.outboxList()).map((e) => e.reportId), ['r-c.1', 'r-c.2', 'r-a.1', 'r-a.2', 'r-d', 'r-b'])
      })
    }
  })
}
