import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { networkInterfaces, tmpdir } from 'node:os'
import { join } from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { request } from 'undici'
import { loadConfig } from '../../src/config/index.ts'
import { createLogger, startServer } from '../../src/server/index.ts'
import type { RunningServer } from '../../src/server/index.ts'
import { nginxOrSkip } from '../helpers/own-nginx.ts'
import { waitFor } from '../helpers/wait.ts'

/**
 * What only the nginx engine has (docs/engines.md#nginx-engine-nginx): the
 * behaviours both engines share are in engines.test.ts.
 */

const FILES: Record<string, number> = { 'a.ts': 200_000, 'b.ts': 64 * 1024, 'c.ts': 1_000 }

interface Engine {
  server: RunningServer
  dir: string
}

async function startEngine (t: TestContext, env: Record<string, string> = {}, logRotateBytes?: number): Promise<Engine> {
  const dir = mkdtempSync(join(tmpdir(), 'sm-nginx-engine-'))
  for (const [name, size] of Object.entries(FILES)) writeFileSync(join(dir, name), Buffer.alloc(size, name))
  const { config } = loadConfig({
    env: {
      ENGINE: 'nginx',
      ENGINE_DIR: join(dir, 'engine'),
      ORIGIN_ROOT: dir,
      STORE_URL: 'memory:',
      HOST: '127.0.0.1',
      PORT: '0',
      TRAFFIC_FLUSH_INTERVAL: '0.2',
      TRAFFIC_MIN_BYTES: '0',
      SHUTDOWN_GRACE: '5',
      ...env
    },
    cwd: dir
  })
  const server = await startServer(config, { logger: createLogger('silent'), nginx: { restartDelay: 100, logRotateBytes } })
  t.after(async () => {
    await server.close()
    rmSync(dir, { recursive: true, force: true })
  })
  return { server, dir }
}

/** A whole download on a fresh connection; the bytes received, or 0 when the request failed. */
async function download (url: string): Promise<number> {
  try {
    const res = await request(url, { reset: true })
    const body = Buffer.from(await res.body.arrayBuffer())
    return res.statusCode === 200 ? body.length : 0
  } catch {
    return 0
  }
}

/**
 * Bytes per uid in the store once it holds `expected`, or after 5 s. nginx
 * writes a response's line after its last byte went out, so a client can
 * hold the whole body a moment before the line is there to read.
 */
async function metered (server: RunningServer, expected: ReadonlyMap<string, number>): Promise<Map<string, number>> {
  const collector = server.app.collector!
  const deadline = Date.now() + 5000
  for (;;) {
    await collector.flush()
    const totals = new Map<string, number>()
    for (const r of await server.app.store.records()) totals.set(r.uid, (totals.get(r.uid) ?? 0) + r.bytes)
    if (Date.now() > deadline || isDeepStrictEqual(totals, expected)) return totals
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

describe('the nginx engine', () => {
  it('kill -9 of nginx under load: the supervisor starts it again, and every finished response is metered once', async (t) => {
    if (!nginxOrSkip(t)) return
    const { server } = await startEngine(t)
    const engine = server as RunningServer & { supervisor: { pid: number | undefined, restarts: number } }
    const received = new Map<string, number>()
    const load = { stop: false }
    const clients = [0, 1, 2, 3].map(async (c) => {
      const uid = `load-${c}`
      while (!load.stop) {
        const got = await download(`${server.address}/a.ts?uid=${uid}`)
        received.set(uid, (received.get(uid) ?? 0) + got)
        if (got === 0) await new Promise((resolve) => setTimeout(resolve, 20))
      }
    })
    await waitFor(() => [...received.values()].reduce((a, b) => a + b, 0) > 2_000_000, 10_000, 'load to run')
    const first = engine.supervisor.pid
    assert.ok(first !== undefined)
    process.kill(first, 'SIGKILL')
    await waitFor(() => engine.supervisor.restarts === 1 && engine.supervisor.pid !== undefined, 10_000, 'nginx to be started again')
    const before = new Map(received)
    await waitFor(() => [...received].some(([uid, n]) => n > (before.get(uid) ?? 0)), 10_000, 'downloads after the restart')
    load.stop = true
    await Promise.all(clients)
    // The killed master's workers were told to finish: their responses
    // completed and were logged, so nothing a client received is missing.
    assert.deepEqual(await metered(server, received), received)
    const metrics = await (await request(`${server.address}/metrics`)).body.text()
    assert.match(metrics, /^streammeter_nginx_restarts_total 1$/m)
    assert.match(metrics, /^streammeter_nginx_up 1$/m)
    // Responses nginx logged (all read by now) are in the per-request figures, as the node engine's are.
    const served = Number(/^streammeter_requests_total\{method="GET",status="200",file_type="[a-z]+"\} (\d+)$/m.exec(metrics)?.[1])
    assert.ok(served >= 10, `${served} requests in /metrics`)
  })

  it('rotates its access log under load: every uid exact, no rotated file left', async (t) => {
    if (!nginxOrSkip(t)) return
    const { server, dir } = await startEngine(t, {}, 4096)
    const received = new Map<string, number>()
    const rotationsSoFar = async (): Promise<number> =>
      Number(/^streammeter_nginx_log_rotations_total (\d+)$/m.exec(await (await request(`${server.address}/metrics`)).body.text())?.[1])
    // Load until the log was rotated three times (at most 20 s).
    const load = { until: Date.now() + 20_000, done: false }
    const watcher = (async () => {
      while (!load.done && Date.now() < load.until) {
        if (await rotationsSoFar() >= 3) load.done = true
        else await new Promise((resolve) => setTimeout(resolve, 100))
      }
      load.done = true
    })()
    await Promise.all(Array.from({ length: 12 }, async (_, c) => {
      const uid = `rot-${c}`
      while (!load.done) received.set(uid, (received.get(uid) ?? 0) + await download(`${server.address}/c.ts?uid=${uid}`))
    }))
    await watcher
    assert.deepEqual(await metered(server, received), received)
    const metrics = await (await request(`${server.address}/metrics`)).body.text()
    const rotations = Number(/^streammeter_nginx_log_rotations_total (\d+)$/m.exec(metrics)?.[1])
    assert.ok(rotations >= 3, `${rotations} rotations`)
    // Rotated files go once the store holds a position past them.
    await server.app.collector!.flush()
    assert.deepEqual(readdirSync(join(dir, 'engine')).filter((f) => /^access\.log\.\d+$/.test(f)), [])
  })

  it('meters a playlist once, for what nginx sent: the app that rewrote it counts nothing', async (t) => {
    if (!nginxOrSkip(t)) return
    const { server, dir } = await startEngine(t)
    writeFileSync(join(dir, 'index.m3u8'), '#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nc.ts\n#EXT-X-ENDLIST\n')
    const res = await request(`${server.address}/index.m3u8?uid=viewer`, { reset: true })
    const body = await res.body.text()
    assert.equal(res.statusCode, 200)
    assert.match(body, /^c\.ts\?uid=viewer$/m)
    const expected = new Map([['viewer', Buffer.byteLength(body)]])
    assert.deepEqual(await metered(server, expected), expected)
  })

  it('answers CORS as the node engine does: preflight, allowed origins, errors included', async (t) => {
    if (!nginxOrSkip(t)) return
    const { server } = await startEngine(t, { CORS_ORIGINS: 'https://player.example, http://[::1]:3000' })
    const get = async (path: string, origin: string, method = 'GET'): Promise<{ status: number, headers: Record<string, unknown> }> => {
      const res = await request(`${server.address}${path}`, { method: method as 'GET', headers: { origin }, reset: true })
      await res.body.dump()
      return { status: res.statusCode, headers: res.headers }
    }
    const allowed = await get('/c.ts?uid=u', 'https://PLAYER.example')
    assert.equal(allowed.status, 200)
    assert.equal(allowed.headers['access-control-allow-origin'], 'https://PLAYER.example')
    assert.equal(allowed.headers['access-control-expose-headers'], 'Content-Length, Content-Range, Accept-Ranges, X-Session-ID')
    assert.equal(allowed.headers.vary, 'Origin')
    const ipv6 = await get('/c.ts?uid=u', 'http://[::1]:3000')
    assert.equal(ipv6.headers['access-control-allow-origin'], 'http://[::1]:3000')
    const other = await get('/c.ts?uid=u', 'https://evil.example')
    assert.equal(other.headers['access-control-allow-origin'], undefined)
    assert.equal(other.headers['access-control-expose-headers'], undefined)
    const missing = await get('/none.ts?uid=u', 'https://player.example')
    assert.equal(missing.status, 404)
    assert.equal(missing.headers['access-control-allow-origin'], 'https://player.example')
    const preflight = await get('/c.ts', 'https://player.example', 'OPTIONS')
    assert.equal(preflight.status, 204)
    assert.equal(preflight.headers['access-control-allow-origin'], 'https://player.example')
    assert.equal(preflight.headers['access-control-allow-methods'], 'GET, HEAD, OPTIONS')
    assert.equal(preflight.headers['access-control-allow-headers'], 'Range, If-None-Match, If-Modified-Since, If-Range, X-Session-ID')
    assert.equal(preflight.headers['access-control-max-age'], '600')
  })

  // Through nginx, the app sees the client's address, not nginx's: a client
  // on another address is no loopback caller, whatever header it sends.
  const external = Object.values(networkInterfaces()).flat().find((i) => i?.family === 'IPv4' && !i.internal)?.address
  it('admin paths answer loopback clients only, by the client\'s own address', { skip: external === undefined ? 'no non-loopback IPv4 address on this host' : false }, async (t) => {
    if (!nginxOrSkip(t)) return
    const { server } = await startEngine(t, { HOST: '0.0.0.0' })
    const local = await request(`http://127.0.0.1:${server.port}/traffic`, { reset: true })
    assert.equal(local.statusCode, 200)
    await local.body.dump()
    const remote = await request(`http://${external}:${server.port}/traffic`, {
      reset: true, headers: { 'x-streammeter-peer': '127.0.0.1', 'x-streammeter-peer-key': 'k'.repeat(64) }
    })
    assert.equal(remote.statusCode, 403)
    assert.equal((await remote.body.json() as { error: { code: string } }).error.code, 'SM_ERR_FORBIDDEN')
  })
})
