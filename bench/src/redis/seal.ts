/**
 * Seal and delivery bookkeeping of the Redis store: a window with N
 * qualified uids sealed into reports (rendered by the real report builder,
 * 5000 uids per report as by default), then every report taken from the
 * outbox and acknowledged one by one, as the reporter does around its POSTs.
 */
import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { renderReports } from '../../../src/meter/index.ts'
import type { ReportContext } from '../../../src/meter/index.ts'
import { DEFAULT_POLICY, bytesOf, makeDeltas } from './input.ts'
import { onFreshStores, prefixMemory, slowestSince, slowlogMark } from './ledger.ts'

/** Uids per report part (TRAFFIC_REPORT_MAX_UIDS's default). */
export const REPORT_MAX_UIDS = 5000

/** One round of sealing N qualified uids and acknowledging their reports. */
export interface SealRound {
  uids: number
  reports: number
  /** `seal()`: stage (Lua), render (JS), commit (Lua). */
  sealMs: number
  /** Longest script of ours in the SLOWLOG during the seal, ms; undefined below its threshold. */
  slowestMs: number | undefined
  /** Every report: `outboxHead()` then `outboxAck()`, two round-trips each. */
  ackMs: number
  /** Redis memory of the pending reports (MEMORY USAGE of the report keys) per uid they carry. */
  outboxBytesPerUid: number
  /** Every uid and byte flushed came out in the reports, and the outbox is empty after the acks. */
  ok: boolean
}

export async function sealRounds (uids: number, rounds: number, progress: (line: string) => void): Promise<SealRound[]> {
  const policy = { ...DEFAULT_POLICY, minBytes: 0 } // every uid qualifies
  const ctx: ReportContext = { workerId: 'bench', reportInterval: 300, minBytes: 0, maxUidsPerReport: REPORT_MAX_UIDS, newId: randomUUID }
  return await onFreshStores('seal', rounds, { policy }, async ({ admin, store, prefix, round: r }) => {
    const now = Date.now()
    const deltas = makeDeltas(uids, 0, now)
    await store.flush(deltas)
    const mark = await slowlogMark(admin)
    const t0 = performance.now()
    const sealed = await store.seal({ now, intervalMs: 300_000, force: true, render: (records, at) => renderReports(records, at, ctx) })
    const sealMs = performance.now() - t0
    const slowest = await slowestSince(admin, mark, prefix)
    const outbox = await prefixMemory(admin, prefix, (key) => key.startsWith(`{${prefix}}:report:`))
    let acked = 0
    let ackedUids = 0
    let ackedBytes = 0
    const t1 = performance.now()
    for (let head = await store.outboxHead(); head !== undefined; head = await store.outboxHead()) {
      if (!await store.outboxAck(head.reportId, now)) break
      acked++
      ackedUids += head.uids
      ackedBytes += head.bytes
    }
    const ackMs = performance.now() - t1
    const ok = sealed.reports.length === Math.ceil(uids / REPORT_MAX_UIDS) && acked === sealed.reports.length &&
      ackedUids === uids && ackedBytes === bytesOf(deltas) && (await store.outboxStats()).pending === 0
    const result: SealRound = { uids, reports: acked, sealMs, slowestMs: slowest === undefined ? undefined : slowest / 1000, ackMs, outboxBytesPerUid: outbox.bytes / uids, ok }
    progress(`  seal ${uids} uids, round ${r + 1}/${rounds}: seal ${sealMs.toFixed(0)} ms, ${acked} acks ${ackMs.toFixed(0)} ms${ok ? '' : ' CHECK FAILED'}`)
    return result
  })
}
