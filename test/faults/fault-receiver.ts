import { createServer } from 'node:http'
import type { IncomingHttpHeaders, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

/** One report POST as the receiver saw it. */
export interface Received {
  /** 1-based arrival number. */
  n: number
  headers: IncomingHttpHeaders
  body: string
  /** The report's id (its `Idempotency-Key`). */
  id: string
  /** What the receiver decided; a decision of 2xx or 409 means it keeps the report. */
  status: number
}

/**
 * How to answer one POST: a status, after `delayMs` (default 0); `drop`
 * keeps the decision but cuts the connection instead of answering (the
 * receiver stored the report, the sender never heard); or no answer at all.
 */
export type Decision = number | { status: number, delayMs?: number, drop?: boolean } | 'hang'

/** Decides each POST; `seen` counts earlier POSTs with the same id. */
export type Policy = (r: { n: number, id: string, body: string, bytes: number, seen: number }) => Decision

/**
 * A report endpoint for the fault suite whose answers a policy decides, and
 * that keeps, as a deduplicating billing receiver does, every report it
 * decided to accept (2xx or 409) once per `Idempotency-Key`, even when its
 * answer reached the sender too late (the sender timed out and retries).
 */
export class FaultReceiver {
  readonly received: Received[] = []
  policy: Policy
  readonly #server: Server
  readonly #open = new Set<ServerResponse>()

  private constructor (server: Server, policy: Policy) {
    this.#server = server
    this.policy = policy
  }

  static async start (policy: Policy = () => 200): Promise<FaultReceiver> {
    const server = createServer()
    const receiver = new FaultReceiver(server, policy)
    server.on('request', (req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8')
        const id = String(req.headers['idempotency-key'])
        const seen = receiver.received.filter((r) => r.id === id).length
        const n = receiver.received.length + 1
        const decision = receiver.policy({ n, id, body, bytes: Buffer.byteLength(body), seen })
        const status = decision === 'hang' ? 0 : typeof decision === 'number' ? decision : decision.status
        receiver.received.push({ n, headers: req.headers, body, id, status })
        receiver.#open.add(res)
        res.on('close', () => receiver.#open.delete(res))
        if (decision === 'hang') return
        const delay = typeof decision === 'number' ? 0 : decision.delayMs ?? 0
        const drop = typeof decision !== 'number' && decision.drop === true
        setTimeout(() => {
          if (drop) res.destroy()
          else if (!res.destroyed) res.writeHead(status, { 'content-type': 'application/json' }).end('{}')
        }, delay)
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    return receiver
  }

  get url (): string {
    const { port } = this.#server.address() as AddressInfo
    return `http://127.0.0.1:${port}/usage`
  }

  /** Reports kept, once per id, parsed. */
  get kept (): Array<{ id: string, report: { report_id: string, traffic_details: Array<{ uid: string, total_bytes: number }> } }> {
    const out = new Map<string, { id: string, report: any }>()
    for (const r of this.received) {
      if (out.has(r.id) || !((r.status >= 200 && r.status < 300) || r.status === 409)) continue
      out.set(r.id, { id: r.id, report: JSON.parse(r.body) })
    }
    return [...out.values()]
  }

  /** Bytes per uid billed: the kept reports summed. */
  billed (): Map<string, number> {
    const totals = new Map<string, number>()
    for (const { report } of this.kept) {
      for (const d of report.traffic_details) totals.set(d.uid, (totals.get(d.uid) ?? 0) + d.total_bytes)
    }
    return totals
  }

  /** POSTs of one id whose bodies differed (must never happen). */
  changedBodies (): number {
    const first = new Map<string, string>()
    let changed = 0
    for (const r of this.received) {
      const body = first.get(r.id)
      if (body === undefined) first.set(r.id, r.body)
      else if (body !== r.body) changed++
    }
    return changed
  }

  async close (): Promise<void> {
    for (const res of this.#open) res.destroy()
    this.#server.closeAllConnections()
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }
}
