import { setTimeout as sleep } from 'node:timers/promises'
import { Pool } from 'undici'
import { httpGet } from './net.ts'

/** One request of the exactness pass. */
export interface VerifyRequest {
  /** Signed path with query. */
  path: string
  uid: string
  /** The file's size: a complete 200 delivers exactly this. */
  bytes: number
}

/** What the client of the exactness pass received. */
export interface ClientTally {
  requests: number
  bytes: number
  perUid: Map<string, number>
  /** Requests that did not give a complete 200 (each one a failed check). */
  failures: string[]
}

/**
 * Fetch every request of `list` from `baseUrl`, `concurrency` at a time over
 * a keep-alive pool, reading every body to its end and counting its bytes
 * per uid: the bytes streammeter's clients got, which its reports must
 * match exactly. Not timed.
 */
export async function fetchAll (baseUrl: string, list: readonly VerifyRequest[], concurrency: number): Promise<ClientTally> {
  const pool = new Pool(baseUrl, { connections: concurrency })
  const tally: ClientTally = { requests: 0, bytes: 0, perUid: new Map(), failures: [] }
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < list.length) {
      const r = list[next++] as VerifyRequest
      let got = 0
      let status = 0
      try {
        const res = await pool.request({ path: r.path, method: 'GET' })
        status = res.statusCode
        for await (const chunk of res.body as AsyncIterable<Buffer>) got += chunk.length
      } catch (err) {
        tally.failures.push(`${r.path.slice(0, 40)}…: ${err instanceof Error ? err.message : String(err)}`)
      }
      // Whatever arrived counts: the reports must match what clients got, complete or not.
      tally.requests++
      tally.bytes += got
      tally.perUid.set(r.uid, (tally.perUid.get(r.uid) ?? 0) + got)
      if (status !== 200 || got !== r.bytes) tally.failures.push(`${r.path.slice(0, 40)}…: status ${status}, ${got} of ${r.bytes} bytes`)
    }
  }
  try {
    await Promise.all(Array.from({ length: concurrency }, worker))
  } finally {
    await pool.close()
  }
  return tally
}

/** The figures of streammeter's /metrics that the checks use. */
export interface MetricsSnapshot {
  /** `streammeter_bytes_sent_total`, summed over its file types. */
  bytesSent: number
  activeTransfers: number
}

/** Scrape `baseUrl/metrics` (from loopback, which needs no token when ADMIN_TOKEN is unset). */
export async function scrapeMetrics (baseUrl: string): Promise<MetricsSnapshot> {
  const { status, body } = await httpGet(`${baseUrl}/metrics`, 10_000)
  if (status !== 200) throw new Error(`GET /metrics answered ${status}`)
  let bytesSent = 0
  let activeTransfers = Number.NaN
  for (const line of body.split('\n')) {
    const m = /^(\w+)(?:\{[^}]*\})? (\S+)$/.exec(line)
    if (m === null) continue
    if (m[1] === 'streammeter_bytes_sent_total') bytesSent += Number(m[2])
    else if (m[1] === 'streammeter_active_transfers') activeTransfers = Number(m[2])
  }
  if (Number.isNaN(activeTransfers)) throw new Error('/metrics has no streammeter_active_transfers')
  return { bytesSent, activeTransfers }
}

/**
 * /metrics once the last response has been accounted for: when wrk stops it
 * drops its connections mid-response, and streammeter records each of those
 * when it sees the close. Waits for no active transfer and two equal scrapes.
 */
export async function settledMetrics (baseUrl: string, timeoutMs = 15_000): Promise<MetricsSnapshot> {
  const deadline = Date.now() + timeoutMs
  let prev = await scrapeMetrics(baseUrl)
  while (true) {
    await sleep(300)
    const cur = await scrapeMetrics(baseUrl)
    if (cur.activeTransfers === 0 && cur.bytesSent === prev.bytesSent) return cur
    if (Date.now() > deadline) throw new Error(`streammeter did not settle: ${cur.activeTransfers} active transfers, bytes sent ${prev.bytesSent} → ${cur.bytesSent}`)
    prev = cur
  }
}
