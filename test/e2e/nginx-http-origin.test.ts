import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { request } from 'undici'
import { loadConfig } from '../../src/config/index.ts'
import { createLogger, startServer } from '../../src/server/index.ts'
import type { RunningServer } from '../../src/server/index.ts'
import { nginxOrSkip } from '../helpers/own-nginx.ts'
import { startRecordingOrigin } from '../helpers/recording-origin.ts'
import type { Received } from '../helpers/recording-origin.ts'

/**
 * The nginx engine in front of an HTTP origin (docs/engines.md#nginx-engine-nginx):
 * the same requests through both engines must reach the origin the same
 * way and answer the client the same way, and meter the same bytes.
 */

const FILES: Record<string, Buffer> = {
  '/base/a.ts': Buffer.alloc(50_000, 'a'),
  '/base/sp ace.ts': Buffer.alloc(3_000, 's'),
  '/base/dir/index.m3u8': Buffer.from('#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nseg.ts\n#EXT-X-ENDLIST\n')
}

function serve (req: IncomingMessage, res: ServerResponse): void {
  const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)
  if (path === '/base/boom.ts') {
    res.writeHead(500).end('origin trouble')
    return
  }
  const body = FILES[path]
  if (body === undefined) {
    res.writeHead(404).end('no')
    return
  }
  if (req.headers['if-none-match'] === '"v1"') {
    res.writeHead(304, { etag: '"v1"' }).end()
    return
  }
  const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '')
  if (range !== null) {
    const [from, to] = [Number(range[1]), Number(range[2])]
    res.writeHead(206, { 'content-range': `bytes ${from}-${to}/${body.length}`, 'content-length': to - from + 1, etag: '"v1"' })
    res.end(body.subarray(from, to + 1))
    return
  }
  // CORS is the proxy's (CORS_ORIGINS), never the origin's.
  const cors = { 'access-control-allow-origin': 'https://elsewhere.example', 'access-control-allow-credentials': 'true', 'access-control-max-age': '99' }
  res.writeHead(200, { 'content-length': body.length, etag: '"v1"', ...cors })
  res.end(req.method === 'HEAD' ? undefined : body)
}

/** [method, target, headers]: each through both engines. */
const REQUESTS: Array<[string, string, Record<string, string>]> = [
  ['GET', '/a.ts?uid=u1&x=1&key=mine&expires=5&token=t', {}],
  ['GET', '/a.ts?uid=u1', { range: 'bytes=10-19' }],
  ['GET', '/a.ts?uid=u1', { 'if-none-match': '"v1"' }],
  ['HEAD', '/a.ts?uid=u1', {}],
  ['GET', '/sp%20ace.ts?uid=u2', {}],
  ['GET', '/missing.ts?uid=u1', {}],
  ['GET', '/boom.ts?uid=u1', {}],
  ['GET', '/dir/index.m3u8?uid=u3', {}],
  // Only the proxy's own parameters (nginx writes the origin's URI itself), and the nearest that are not.
  ['GET', '/a.ts', {}],
  ['GET', '/a.ts?uid=u1&sid=s1&expires=5&&scope=x&ip', {}],
  ['GET', '/a.ts?uid=u1&UID=u9', {}],
  ['GET', '/a.ts?uid=u1&x=base', {}]
]

/** What the origin saw of a request, less what differs by nature (the port of the peer). */
function seen (r: Received): Record<string, unknown> {
  const h = r.headers
  return {
    method: r.method,
    url: r.url,
    host: h.host,
    authorization: h.authorization,
    acceptEncoding: h['accept-encoding'],
    userAgent: h['user-agent'],
    forwardedFor: h['x-forwarded-for'],
    forwardedProto: h['x-forwarded-proto'],
    range: h.range,
    ifNoneMatch: h['if-none-match'],
    cookie: h.cookie
  }
}

async function start (t: TestContext, engine: string, originUrl: string): Promise<RunningServer> {
  const dir = mkdtempSync(join(tmpdir(), `sm-http-origin-${engine}-`))
  const { config } = loadConfig({
    env: {
      ENGINE: engine,
      ENGINE_DIR: join(dir, 'engine'),
      ORIGIN_URL: originUrl,
      ORIGIN_HOST_HEADER: 'media.example:8443',
      STORE_URL: 'memory:',
      HOST: '127.0.0.1',
      PORT: '0',
      TRAFFIC_MIN_BYTES: '0'
    },
    cwd: dir
  })
  const server = await startServer(config, { logger: createLogger('silent') })
  t.after(async () => {
    await server.close()
    rmSync(dir, { recursive: true, force: true })
  })
  return server
}

async function run (server: RunningServer): Promise<Array<Record<string, unknown>>> {
  const out: Array<Record<string, unknown>> = []
  for (const [method, target, headers] of REQUESTS) {
    const res = await request(`${server.address}${target}`, {
      method: method as 'GET', headers: { 'user-agent': 'player/1.0', cookie: 'a=b', ...headers }, reset: true
    })
    const body = await res.body.text()
    const cors = ['allow-origin', 'allow-credentials', 'max-age', 'expose-headers'].map((h) => res.headers[`access-control-${h}`])
    out.push({ target, status: res.statusCode, type: res.headers['content-type'], range: res.headers['content-range'], cors, body })
  }
  return out
}

/**
 * Bytes per uid in the store; with `expected`, once it holds that or after
 * 5 s (nginx writes a line just after the response's last byte went out).
 */
async function metered (server: RunningServer, expected?: Record<string, number>): Promise<Record<string, number>> {
  const deadline = Date.now() + 5000
  for (;;) {
    await server.app.collector!.flush()
    const totals: Record<string, number> = {}
    for (const r of await server.app.store.records()) totals[r.uid] = (totals[r.uid] ?? 0) + r.bytes
    if (expected === undefined || Date.now() > deadline || isDeepStrictEqual(totals, expected)) return totals
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

describe('the nginx engine in front of an HTTP origin', () => {
  it('asks the origin and answers the client as the node engine does, and meters the same bytes', async (t) => {
    if (!nginxOrSkip(t)) return
    const origin = await startRecordingOrigin(serve)
    t.after(() => origin.close())
    const base = `http://user:p%40ss@127.0.0.1:${origin.port}/base`
    const results: Record<string, { answers: Array<Record<string, unknown>>, asked: Array<Record<string, unknown>>, bytes: Record<string, number> }> = {}
    for (const engine of ['node', 'nginx']) {
      const server = await start(t, engine, base)
      origin.received.length = 0
      const answers = await run(server)
      results[engine] = { answers, asked: origin.received.map(seen), bytes: await metered(server, results.node?.bytes) }
    }
    const { node, nginx } = results as Record<'node' | 'nginx', (typeof results)[string]>
    for (let i = 0; i < REQUESTS.length; i++) assert.deepEqual(nginx.answers[i], node.answers[i], REQUESTS[i]?.[1])
    assert.deepEqual(nginx.asked, node.asked)
    assert.equal(node.asked[0]?.url, '/base/a.ts?x=1&key=mine')
    assert.equal(node.asked[0]?.authorization, `Basic ${Buffer.from('user:p@ss').toString('base64')}`)
    assert.deepEqual(nginx.bytes, node.bytes)
    assert.deepEqual(Object.keys(node.bytes).sort(), ['u1', 'u2', 'u3'])
  })
})
