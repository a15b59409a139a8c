import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, it } from 'node:test'
import type { TestContext } from 'node:test'
import { request } from 'undici'
import { loadConfig } from '../../src/config/index.ts'
import { createLogger, startServer } from '../../src/server/index.ts'
import { startRecordingOrigin } from '../helpers/recording-origin.ts'
import type { RecordingOrigin } from '../helpers/recording-origin.ts'
import { waitFor } from '../helpers/wait.ts'

/**
 * ORIGIN_MAX_CONNECTIONS (docs/limits.md#the-origin): at most that many connections to the
 * origin; further requests wait for one, and a request still waiting when
 * ORIGIN_TIMEOUT is up gets 504 (undici's own timers start only once a
 * connection takes a request).
 */

const cwd = mkdtempSync(join(tmpdir(), 'sm-origin-conns-'))
after(() => rmSync(cwd, { recursive: true, force: true }))

const BODY = Buffer.alloc(4000, 3)

async function proxy (t: TestContext, o: RecordingOrigin, env: Record<string, string>): Promise<string> {
  const { config } = loadConfig({ env: { HOST: '127.0.0.1', PORT: '0', STORE_URL: 'memory:', ORIGIN_URL: o.url, ...env }, cwd })
  const server = await startServer(config, { logger: createLogger('silent') })
  t.after(() => server.close())
  return server.address
}

it('with one connection, concurrent requests queue and all complete, one at a time at the origin', async (t) => {
  // Each answer takes 150 ms: four at once need 600 ms of one connection.
  const o = await startRecordingOrigin((_req, res) => {
    setTimeout(() => res.writeHead(200, { 'content-length': String(BODY.length) }).end(BODY), 150)
  })
  t.after(() => o.close())
  const base = await proxy(t, o, { ORIGIN_MAX_CONNECTIONS: '1', ORIGIN_TIMEOUT: '20' })
  const answers = await Promise.all([1, 2, 3, 4].map(async (i) => {
    const res = await request(`${base}/seg${i}.ts`)
    return { status: res.statusCode, body: Buffer.from(await res.body.arrayBuffer()) }
  }))
  for (const a of answers) {
    assert.equal(a.status, 200)
    assert.deepEqual(a.body, BODY)
  }
  assert.equal(o.received.length, 4)
  assert.equal(o.maxConcurrent(), 1)
})

it('a request queued past ORIGIN_TIMEOUT gets 504 and never reaches the origin; the one holding the connection completes', async (t) => {
  // /long.ts sends its headers at once and its body over 2.5 s, holding the only connection.
  const o = await startRecordingOrigin((req, res) => {
    if (req.url !== '/long.ts') {
      res.writeHead(200, { 'content-length': String(BODY.length) }).end(BODY)
      return
    }
    res.writeHead(200, { 'content-length': String(BODY.length) })
    res.write(BODY.subarray(0, 1000))
    setTimeout(() => res.end(BODY.subarray(1000)), 2500)
  })
  t.after(() => o.close())
  const base = await proxy(t, o, { ORIGIN_MAX_CONNECTIONS: '1', ORIGIN_TIMEOUT: '1' })

  const long = await request(`${base}/long.ts`)
  assert.equal(long.statusCode, 200)
  const longBody = long.body.arrayBuffer()
  const started = Date.now()
  const queued = await request(`${base}/queued.ts`)
  const waited = Date.now() - started
  assert.equal(queued.statusCode, 504)
  assert.deepEqual(await queued.body.json(), { error: { code: 'SM_ERR_ORIGIN_TIMEOUT', message: 'the origin did not answer in time' } })
  assert.ok(waited >= 900 && waited < 2400, `504 after ${waited} ms`)

  assert.deepEqual(Buffer.from(await longBody), BODY)
  // The connection is free again: the next request goes out, and the timed-out one never did.
  const next = await request(`${base}/next.ts`)
  assert.equal(next.statusCode, 200)
  await next.body.dump()
  await waitFor(() => o.received.length >= 2, 2000, 'the next request to reach the origin')
  assert.deepEqual(o.received.map((r) => r.url), ['/long.ts', '/next.ts'])
})
