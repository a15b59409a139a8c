import { createServer } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'

/** What one streammeter instance reported. */
export interface ReceivedUsage {
  /** Unique reports (by Idempotency-Key). */
  reports: number
  /** Deliveries of a report already received (retries), not counted again. */
  duplicates: number
  /** Bytes per uid over the unique reports. */
  totals: Map<string, number>
}

/**
 * A minimal billing endpoint (docs/report-format.md#request) for the streammeter targets: each
 * POSTs to `/report/<target>`, each report counts once per Idempotency-Key
 * (a retried delivery repeats it), and the per-uid totals are kept apart per
 * target. It runs inside the benchmark process; reports are rare (one per
 * window, plus the final one on SIGTERM), so it costs the measured cores
 * nothing.
 */
export class ReportReceiver {
  readonly #server: Server
  readonly #usage = new Map<string, ReceivedUsage & { keys: Set<string> }>()
  #port = 0

  constructor () {
    this.#server = createServer((req, res) => { this.#handle(req, res) })
  }

  async listen (): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.listen(0, '127.0.0.1', resolve)
    })
    const address = this.#server.address()
    if (address === null || typeof address === 'string') throw new Error('receiver has no port')
    this.#port = address.port
  }

  /** TRAFFIC_REPORT_URL for `target`. */
  urlFor (target: string): string {
    return `http://127.0.0.1:${this.#port}/report/${target}`
  }

  /** What `target` has reported so far. */
  usage (target: string): ReceivedUsage {
    const u = this.#usage.get(target)
    return u === undefined ? { reports: 0, duplicates: 0, totals: new Map() } : { reports: u.reports, duplicates: u.duplicates, totals: u.totals }
  }

  async close (): Promise<void> {
    this.#server.closeAllConnections()
    await new Promise<void>((resolve) => this.#server.close(() => { resolve() }))
  }

  #handle (req: IncomingMessage, res: ServerResponse): void {
    const m = /^\/report\/([\w-]+)$/.exec(req.url ?? '')
    if (req.method !== 'POST' || m === null) {
      res.writeHead(404).end()
      return
    }
    const target = m[1] as string
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => { chunks.push(c) })
    req.on('end', () => {
      let body: { report_id?: unknown, traffic_details?: unknown }
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof body
      } catch {
        res.writeHead(400).end()
        return
      }
      const header = req.headers['idempotency-key']
      const key = typeof header === 'string' ? header : String(body.report_id)
      let u = this.#usage.get(target)
      if (u === undefined) {
        u = { reports: 0, duplicates: 0, totals: new Map(), keys: new Set() }
        this.#usage.set(target, u)
      }
      if (u.keys.has(key)) {
        u.duplicates++
      } else {
        u.keys.add(key)
        u.reports++
        for (const d of Array.isArray(body.traffic_details) ? body.traffic_details as Array<{ uid?: unknown, total_bytes?: unknown }> : []) {
          if (typeof d.uid === 'string' && typeof d.total_bytes === 'number') {
            u.totals.set(d.uid, (u.totals.get(d.uid) ?? 0) + d.total_bytes)
          }
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}')
    })
  }
}
