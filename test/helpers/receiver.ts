import { createServer } from 'node:http'
import type { IncomingHttpHeaders, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { addReportBytes } from './report-bytes.ts'

/** How the receiver answers one request. */
export type Answer =
  | number // that status, with an empty JSON body
  | 'hang' // never answer (the client must time out)
  | { hold: Promise<number> } // answer with the status once the promise resolves
  | { status: number, headers: Record<string, string> } // that status with these headers
  | ((request: ReceivedRequest) => Answer) // decided by the request (its size, its body…)

/** One report POST as the receiver saw it. */
export interface ReceivedRequest {
  path: string
  headers: IncomingHttpHeaders
  /** The raw body, byte for byte. */
  body: string
  /** The status answered (undefined while held or hanging). */
  status?: number
}

/**
 * A real HTTP report endpoint on 127.0.0.1, port 0. Answers are taken in
 * order from `plan`; when the plan is exhausted it answers `fallback`.
 */
export class Receiver {
  readonly requests: ReceivedRequest[] = []
  plan: Answer[] = []
  fallback: Answer = 200
  #server: Server
  #hanging = new Set<ServerResponse>()
  #waiters: Array<() => void> = []

  private constructor (server: Server) {
    this.#server = server
  }

  static async start (plan: Answer[] = []): Promise<Receiver> {
    const server = createServer()
    const receiver = new Receiver(server)
    receiver.plan = plan
    server.on('request', (req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const entry: ReceivedRequest = { path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') }
        receiver.requests.push(entry)
        for (const w of receiver.#waiters.splice(0)) w()
        let answer = receiver.plan.shift() ?? receiver.fallback
        while (typeof answer === 'function') answer = answer(entry)
        const reply = (status: number, headers: Record<string, string> = {}): void => {
          entry.status = status
          res.writeHead(status, { 'content-type': 'application/json', ...headers }).end('{}')
        }
        if (answer === 'hang') {
          receiver.#hanging.add(res)
        } else if (typeof answer === 'number') {
          reply(answer)
        } else if ('hold' in answer) {
          answer.hold.then((status) => reply(status), () => res.destroy())
        } else {
          reply(answer.status, answer.headers)
        }
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    return receiver
  }

  get url (): string {
    const { port } = this.#server.address() as AddressInfo
    return `http://127.0.0.1:${port}/report`
  }

  /** Requests answered with 2xx or 409: the ones a deduplicating receiver keeps. */
  get accepted (): ReceivedRequest[] {
    return this.requests.filter((r) => r.status !== undefined && ((r.status >= 200 && r.status < 300) || r.status === 409))
  }

  /** Parsed accepted reports, deduplicated by Idempotency-Key, in arrival order. */
  get reports (): Array<Record<string, any>> {
    const seen = new Set<string>()
    const out: Array<Record<string, any>> = []
    for (const r of this.accepted) {
      const key = String(r.headers['idempotency-key'])
      if (seen.has(key)) continue
      seen.add(key)
      out.push(JSON.parse(r.body))
    }
    return out
  }

  /** Bytes per uid over the deduplicated accepted reports. */
  totals (): Map<string, number> {
    const totals = new Map<string, number>()
    for (const report of this.reports) addReportBytes(totals, report as { traffic_details: unknown })
    return totals
  }

  /** Resolves once `n` requests have arrived. */
  async waitForRequests (n: number, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (this.requests.length < n) {
      if (Date.now() > deadline) throw new Error(`receiver got ${this.requests.length} of ${n} requests`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 50)
        this.#waiters.push(() => {
          clearTimeout(timer)
          resolve()
        })
      })
    }
  }

  async close (): Promise<void> {
    for (const res of this.#hanging) res.destroy()
    this.#server.closeAllConnections()
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }
}
