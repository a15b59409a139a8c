/**
 * Peer target: a Fastify app proxying every path to PEER_ORIGIN_URL with
 * @fastify/http-proxy (undici underneath, like streammeter's HTTP origin),
 * metering bytes per uid with {@link UsageCounter}. Listens on PEER_PORT.
 */
import httpProxy from '@fastify/http-proxy'
import Fastify from 'fastify'
import { UsageCounter, peerSettings, stopOnSignal } from './usage-counter.ts'

const { origin, port, host } = peerSettings()
const counter = new UsageCounter()
const app = Fastify({ logger: false })
app.addHook('onRequest', (request, reply, done) => {
  counter.watch(request.raw, reply.raw)
  done()
})
await app.register(httpProxy, { upstream: origin })
await app.listen({ port, host })
process.stderr.write(`fastify-proxy: listening on ${host}:${port}, upstream ${origin}\n`)
stopOnSignal('fastify-proxy', counter, () => app.close())
