import { int } from '../lib/format.ts'
import type { Content } from './content.ts'
import { readerCaughtUp } from './engine-log.ts'
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
  /**
   * What the reports are checked against: `streammeter_bytes_sent_total`
   * (the node engine's own count of the bytes its client sockets took), or
   * `access log` (the nginx engine: nginx's `$body_bytes_sent` summed over
   * the lines of ENGINE_DIR/access.log that carry a uid).
   */
  reference: string
  /** The reference after the timed load (warm-ups and probe included). */
  metricsAfterLoad: number
  /** …and after the exactness pass, just before SIGTERM. */
  metricsBeforeStop: number
  /** The nginx engine: the access log's sum over every uid once streammeter (and with it nginx) had stopped. */
  logAfterStop?: number
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
 * - reported bytes of the load's uids = the reference count after the load,
 *   and all reported bytes = the reference just before SIGTERM (what wrk's
 *   clients got cannot be counted cheaply, but the reports must agree with
 *   what the server says it sent). The reference is the node engine's
 *   streammeter_bytes_sent_total, or for the nginx engine nginx's own
 *   `$body_bytes_sent` over the access log's lines with a uid (which the
 *   reports must also match after the stop, when nginx has finished);
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
  const engineLog = target.engine?.log
  const reference = engineLog === undefined ? 'streammeter_bytes_sent_total' : 'the access log'
  const settled = async (): Promise<{ bytesSent: number }> => {
    if (engineLog === undefined) return await settledMetrics(target.url)
    await readerCaughtUp(target.url, engineLog)
    return { bytesSent: engineLog.bytesOf(() => true) }
  }
  const afterLoad = await settled()
  const list = verifyRequests(opts)
  const tally = await fetchAll(target.url, list, VERIFY.concurrency)
  if (tally.failures.length > 0) problems.push(`${tally.failures.length} incomplete responses in the exactness pass, e.g. ${tally.failures.slice(0, 3).join('; ')}`)
  const beforeStop = await settled()
  const exit = await opts.group.stop(target.proc, 'SIGTERM', 60_000)
  if (exit.code !== 0) problems.push(`streammeter exited with ${String(exit.code ?? exit.signal)} after SIGTERM:\n${logTail(target.proc)}`)
  engineLog?.update()
  const logAfterStop = engineLog?.bytesOf(() => true)

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
    problems.push(`reports of the load's uids say ${int(reportedLoad)} bytes, ${reference} said ${int(afterLoad.bytesSent)} after the load`)
  }
  if (reportedTotal !== beforeStop.bytesSent) {
    problems.push(`reports say ${int(reportedTotal)} bytes in all, ${reference} said ${int(beforeStop.bytesSent)} before SIGTERM`)
  }
  if (beforeStop.bytesSent - afterLoad.bytesSent !== tally.bytes) {
    problems.push(`${reference} grew by ${int(beforeStop.bytesSent - afterLoad.bytesSent)} in the exactness pass, whose client got ${int(tally.bytes)}`)
  }
  if (engineLog !== undefined) {
    // nginx's account of each verified uid agrees with the client's too.
    const differ = [...tally.perUid].filter(([uid, bytes]) => (engineLog.perUid.get(uid) ?? 0) !== bytes)
    if (differ.length > 0) problems.push(`${differ.length} uids of the exactness pass have other byte counts in the access log than the client got, e.g. ${differ.slice(0, 3).map(([u, b]) => `${u}: log ${engineLog.perUid.get(u) ?? 0}, client ${b}`).join('; ')}`)
    if (logAfterStop !== reportedTotal) problems.push(`reports say ${int(reportedTotal)} bytes in all, the access log holds ${int(logAfterStop ?? 0)} once nginx had stopped`)
    if (engineLog.badLines > 0) problems.push(`${engineLog.badLines} lines of the access log are no access-log lines`)
  }
  return {
    target: target.spec.id,
    ok: problems.length === 0,
    problems,
    reference,
    metricsAfterLoad: afterLoad.bytesSent,
    metricsBeforeStop: beforeStop.bytesSent,
    ...(logAfterStop === undefined ? {} : { logAfterStop }),
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
    `(${int(e.verifyBytes)} bytes); reports of the load = ${e.reference === 'the access log' ? "nginx's $body_bytes_sent in the access log" : e.reference} = ${int(e.reportedLoadBytes)} bytes; ` +
    `${e.reports} reports${e.duplicateDeliveries > 0 ? `, ${e.duplicateDeliveries} duplicate deliveries ignored` : ''}; clean exit`
}
