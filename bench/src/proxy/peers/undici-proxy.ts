/**
 * Peer target: the leanest proxy on streammeter's own stack, node:http in
 * front and an undici Pool to PEER_ORIGIN_URL behind (`dispatch()`, as
 * streammeter's HTTP origin does), metering bytes per uid with
 * {@link UsageCounter}. No access check, no sessions, no store, no metrics:
 * what streammeter's node engine would cost with none of its features, so
 * that a run shows what the features cost apart from the stack. Forwards
 * what streammeter forwards (the conditional and range fields, User-Agent)
 * and answers with the origin's end-to-end fields. Listens on PEER_PORT.
 */
import { createServer } from 'node:http'
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import { Pool } from 'undici'
import type { Dispatcher } from 'undici'
import { HOP_BY_HOP } from '../../../../src/server/origin/origin-response-headers.ts'
import { UsageCounter, peerSettings, stopOnSignal } from './usage-counter.ts'

const FORWARDED = ['range', 'if-range', 'if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since', 'user-agent'] as const
/** Not passed on: the hop-by-hop fields streammeter drops too. */
const DROPPED = new Set(HOP_BY_HOP)

const { origin, port, host } = peerSettings()
const counter = new UsageCounter()
// streammeter's HTTP origin's pool: the same size and timeouts (src/server/origin/http-origin.ts).
const pool = new Pool(origin, { connections: 256, connectTimeout: 10_000, headersTimeout: 10_000, bodyTimeout: 30_000, keepAliveTimeout: 4_000 })

function proxy (req: IncomingMessage, res: ServerResponse): void {
  const headers: Record<string, string> = {}
  for (const name of FORWARDED) {
    const v = req.headers[name]
    if (typeof v === 'string') headers[name] = v
  }
  let resume: (() => void) | undefined
  res.on('drain', () => { resume?.() })
  const handler: Dispatcher.DispatchHandler = {
    onRequestStart (controller) {
      res.once('close', () => { if (!res.writableFinished) controller.abort(new Error('the client went away')) })
    },
    onResponseStart (controller, status, fields) {
      const out: OutgoingHttpHeaders = {}
      for (const [name, value] of Object.entries(fields)) if (!DROPPED.has(name)) out[name] = value
      res.writeHead(status, out)
      resume = () => { controller.resume() }
    },
    onResponseData (controller, chunk) {
      if (!res.write(chunk)) controller.pause()
    },
    onResponseEnd () { res.end() },
    onResponseError (_controller, err) {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' }).end(JSON.stringify({ error: err.message }))
      else res.destroy()
    }
  }
  pool.dispatch({ method: req.method === 'HEAD' ? 'HEAD' : 'GET', path: req.url ?? '/', headers }, handler)
}

const server = createServer((req, res) => {
  counter.watch(req, res)
  proxy(req, res)
})
await new Promise<void>((resolve) => server.listen(port, host, resolve))
process.stderr.write(`undici-proxy: listening on ${host}:${port}, upstream ${origin}\n`)
stopOnSignal('undici-proxy', counter, async () => {
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => { resolve() }))
  await pool.close()
})
