import { int } from '../lib/format.ts'
import type { Content } from './content.ts'
import { VERIFY } from './plan.ts'
import type { ProcessGroup } from './processes.ts'
import { logTail } from './processes.ts'
import type { ReportReceiver } from './report-receiver.ts'
import { seededRandom, shuffled, signedPool } from './signed-paths.ts'
import type { RunningTarget } from './targets.ts'
import { fetchAll, settledMetrics } from './verify.ts'
import type { VerifyRequest } from './verify.ts'

/** Prefix of the uids of the exactness pass; the timed load uses `u…`, so the two never mix. */
const VERIFY_UID_PREFIX = 'v'

/** The outcome of the exactness check of one metered streammeter. */
export interface Exactness {
  target: string
  ok: boolean
  problems: string[]
  /** streammeter_bytes_sent_total after the timed load (warm-ups and probe included). */
  metricsAfterLoad: number
  /** …and after the exactness pass, just before SIGTERM. */
  metricsBeforeStop: number
  /** Reported bytes of the load's uids (everything but the exactness pass). */
  reportedLoadBytes: number
  reportedTotalBytes: number
  reports: number
  duplicateDeliveries: number
  verifyRequests: number
  verifyBytes: number
  verifyUids: number
  exitCode: number | null
}

/**
 * After the timed load: fetch a few thousand random signed S1/S2 URLs for
 * uids of their own with a client that reads every body to the end, stop
 * streammeter with SIGTERM (it flushes, seals a last window and delivers it),
 * then require
 * - per uid of that pass: reported bytes = bytes the client received;
 * - reported bytes of the load's uids = streammeter_bytes_sent_total scraped
 *   after the load, and all reported bytes = the same metric scraped just
 *   before SIGTERM (what wrk's clients got cannot be counted cheaply, but
 *   streammeter's own counter and its reports must agree);
 * - a clean exit (status 0).
 */
export async function checkExactness (target: RunningTarget, opts: {
  group: ProcessGroup
  receiver: ReportReceiver
  content: Content
  secret: string
  expires: number
  seed: number
}): Promise<Exactness> {
  const problems: string[] = []
  const afterLoad = await settledMetrics(target.url)
  const list = verifyRequests(opts)
  const tally = await fetchAll(target.url, list, VERIFY.concurrency)
  if (tally.failures.length > 0) problems.push(`${tally.failures.length} incomplete responses in the exactness pass, e.g. ${tally.failures.slice(0, 3).join('; ')}`)
  const beforeStop = await settledMetrics(target.url)
  const exit = await opts.group.stop(target.proc, 'SIGTERM', 60_000)
  if (exit.code !== 0) problems.push(`streammeter exited with ${String(exit.code ?? exit.signal)} after SIGTERM:\n${logTail(target.proc)}`)

  const usage = opts.receiver.usage(target.spec.id)
  let reportedLoad = 0
  let reportedTotal = 0
  const mismatches: string[] = []
  for (const [uid, bytes] of usage.totals) {
    reportedTotal += bytes
    if (!uid.startsWith(VERIFY_UID_PREFIX)) {
      reportedLoad += bytes
    } else if (tally.perUid.get(uid) !== bytes) {
      mismatches.push(`${uid}: reported ${bytes}, client got ${tally.perUid.get(uid) ?? 0}`)
    }
  }
  for (const [uid, bytes] of tally.perUid) {
    if (bytes > 0 && !usage.totals.has(uid)) mismatches.push(`${uid}: not reported, client got ${bytes}`)
  }
  if (mismatches.length > 0) problems.push(`${mismatches.length} uids of the exactness pass differ: ${mismatches.slice(0, 5).join('; ')}`)
  if (reportedLoad !== afterLoad.bytesSent) {
    problems.push(`reports of the load's uids say ${int(reportedLoad)} bytes, streammeter_bytes_sent_total said ${int(afterLoad.bytesSent)} after the load`)
  }
  if (reportedTotal !== beforeStop.bytesSent) {
    problems.push(`reports say ${int(reportedTotal)} bytes in all, streammeter_bytes_sent_total said ${int(beforeStop.bytesSent)} before SIGTERM`)
  }
  if (beforeStop.bytesSent - afterLoad.bytesSent !== tally.bytes) {
    problems.push(`streammeter_bytes_sent_total grew by ${int(beforeStop.bytesSent - afterLoad.bytesSent)} in the exactness pass, whose client got ${int(tally.bytes)}`)
  }
  return {
    target: target.spec.id,
    ok: problems.length === 0,
    problems,
    metricsAfterLoad: afterLoad.bytesSent,
    metricsBeforeStop: beforeStop.bytesSent,
    reportedLoadBytes: reportedLoad,
    reportedTotalBytes: reportedTotal,
    reports: usage.reports,
    duplicateDeliveries: usage.duplicates,
    verifyRequests: tally.requests,
    verifyBytes: tally.bytes,
    verifyUids: tally.perUid.size,
    exitCode: exit.code
  }
}

function verifyRequests (opts: { content: Content, secret: string, expires: number, seed: number }): VerifyRequest[] {
  const random = seededRandom(opts.seed)
  const list: VerifyRequest[] = []
  for (const [id, count] of [['s1', VERIFY.s1Requests], ['s2', VERIFY.s2Requests]] as const) {
    const { files, bytes } = opts.content.byScenario[id]
    for (const e of signedPool({ secret: opts.secret, files, uids: VERIFY.uids, uidPrefix: VERIFY_UID_PREFIX, size: count, expires: opts.expires, random })) {
      list.push({ path: e.path, uid: e.uid, bytes })
    }
  }
  // Shuffled, so that 1 MiB and 4 KiB responses overlap on the connections as in real traffic.
  return shuffled(list, random)
}

/** One line per check for the report. */
export function exactnessLine (e: Exactness): string {
  if (!e.ok) return `FAIL ${e.target}: ${e.problems.join('; ')}`
  return `OK ${e.target}: ${int(e.verifyRequests)} verified responses for ${int(e.verifyUids)} uids match the reports exactly ` +
    `(${int(e.verifyBytes)} bytes); reports of the load = streammeter_bytes_sent_total = ${int(e.reportedLoadBytes)} bytes; ` +
    `${e.reports} reports${e.duplicateDeliveries > 0 ? `, ${e.duplicateDeliveries} duplicate deliveries ignored` : ''}; clean exit`
}
