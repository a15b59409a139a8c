/**
 * Peer target: node:http with http-proxy (node-http-proxy) in front of
 * PEER_ORIGIN_URL, metering bytes per uid with {@link UsageCounter}.
 * Listens on PEER_PORT.
 */
import { Agent, createServer } from 'node:http'
import httpProxy from 'http-proxy'
import { UsageCounter, peerSettings, stopOnSignal } from './usage-counter.ts'

const { origin, port, host } = peerSettings()
const counter = new UsageCounter()
// http-proxy opens a new connection per request unless given a keep-alive
// agent; every other target keeps its origin connections, so this one does too.
const agent = new Agent({ keepAlive: true, maxSockets: 64 })
const proxy = httpProxy.createProxyServer({ target: origin, agent })
// http-proxy aborts the upstream request on the request's 'aborted' event,
// which Node (since 16) no longer emits once the request has been read: a
// client that leaves mid-response leaves its upstream socket stuck in the
// agent, and after as many such clients as maxSockets the proxy hangs (wrk
// cuts its connections at the end of every run). Destroying the upstream
// request when the response closes early is what any deployment of it on
// current Node needs.
proxy.on('proxyReq', (proxyReq, _req, res) => {
  res.once('close', () => { if (!res.writableFinished) proxyReq.destroy() })
})
proxy.on('error', (_err, _req, res) => {
  if ('writeHead' in res && !res.headersSent) res.writeHead(502, { 'content-type': 'application/json' }).end('{"error":"bad gateway"}')
  else res.destroy()
})
const server = createServer((req, res) => {
  counter.watch(req, res)
  proxy.web(req, res)
})
await new Promise<void>((resolve) => server.listen(port, host, resolve))
process.stderr.write(`http-proxy: listening on ${host}:${port}, upstream ${origin}\n`)
stopOnSignal('http-proxy', counter, async () => {
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => { resolve() }))
  agent.destroy()
})
