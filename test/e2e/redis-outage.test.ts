import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { request } from 'undici'
import { startCliServer } from '../helpers/cli-server.ts'
import type { CliServer } from '../helpers/cli-server.ts'
import { OwnRedis } from '../helpers/own-redis.ts'
import { Receiver } from '../helpers/receiver.ts'
import { download, stopGracefully, trafficOf } from '../helpers/serve-fleet.ts'
import { waitFor } from '../helpers/wait.ts'

const OUTAGE_MS = 10_000
const FILES = { 'a.ts': 100_000, 'b.m4s': 37_123 } as const
const hasRedisServer = spawnSync('redis-server', ['--version']).status === 0
const suite = hasRedisServer || process.env.CI === 'true' ? {} : { skip: 'redis-server is not installed; set CI=true to make this a failure' }

/** A media root, a receiver and a redis-server of the test's own, all cleaned up after. */
async function setup (t: TestContext): Promise<{ root: string, receiver: Receiver, redis: OwnRedis }> {
  const root = mkdtempSync(join(tmpdir(), 'sm-outage-'))
  t.after(() => rmSync(root, { recursive: true, force: true }))
  for (const [name, size] of Object.entries(FILES)) writeFileSync(join(root, name), Buffer.alloc(size, 7))
  const receiver = await Receiver.start()
  t.after(() => receiver.close())
  const redis = await OwnRedis.start()
  t.after(() => redis.destroy())
  return { root, receiver, redis }
}

function serve (t: TestContext, root: string, receiver: Receiver, redis: OwnRedis): Promise<CliServer> {
  const server = startCliServer({
    ORIGIN_ROOT: root,
    STORE_URL: redis.url,
    STORE_PREFIX: 'outage',
    TRAFFIC_MIN_BYTES: '0', // every byte is reported: the totals must match exactly
    TRAFFIC_REPORT_INTERVAL: '1',
    TRAFFIC_FLUSH_INTERVAL: '0.2',
    TRAFFIC_REPORT_URL: receiver.url,
    SHUTDOWN_GRACE: '10'
  })
  t.after(async () => {
    const s = await server.catch(() => undefined)
    if (s !== undefined && s.child.exitCode === null) s.child.kill('SIGKILL')
  })
  return server
}

/** Fetch one file for `uid`; must be served in full whatever the store's state. Adds the body bytes to `got`. */
async function fetchFor (server: CliServer, uid: string, file: keyof typeof FILES, got: Map<string, number>): Promise<void> {
  const { status, bytes } = await download(server, `/${file}?uid=${uid}`)
  assert.equal(status, 200)
  assert.equal(bytes, FILES[file])
  got.set(uid, (got.get(uid) ?? 0) + bytes)
}

async function health (server: CliServer): Promise<{ code: number, status: string }> {
  const res = await request(`${server.url}/health`)
  const body = await res.body.json() as { status: string }
  return { code: res.statusCode, status: body.status }
}

describe('Redis unavailable', suite, () => {
  it(`stopped for ${OUTAGE_MS / 1000} s during traffic and started again: the proxy serves throughout, /health says degraded then ok, every byte is reported once`, async (t) => {
    const { root, receiver, redis } = await setup(t)
    const server = await serve(t, root, receiver, redis)
    const got = new Map<string, number>()
    const uids = ['u0', 'u1', 'u2', 'u3']

    for (let i = 0; i < 8; i++) await fetchFor(server, uids[i % 4]!, i % 2 === 0 ? 'a.ts' : 'b.m4s', got)
    await waitFor(async () => (await trafficOf(server)).current_traffic_summary.unflushed_bytes === 0, 5000, 'first flush')

    await redis.stop()
    const outageEnds = Date.now() + OUTAGE_MS
    await waitFor(async () => (await health(server)).status === 'degraded', 5000, '/health degraded')
    assert.deepEqual(await health(server), { code: 200, status: 'degraded' })
    let i = 0
    while (Date.now() < outageEnds) {
      await fetchFor(server, uids[i % 4]!, i % 3 === 0 ? 'b.m4s' : 'a.ts', got)
      await fetchFor(server, `outage-${i % 5}`, 'b.m4s', got) // uids first seen during the outage
      i++
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    const during = await trafficOf(server)
    assert.equal(during.current_state.store_available, false)
    assert.ok(during.current_traffic_summary.unflushed_bytes > 0, 'usage waits in memory')
    assert.equal(during.statistics.events_dropped, 0)

    await redis.resume()
    await waitFor(async () => (await health(server)).status === 'ok', 10_000, '/health ok again')
    assert.equal((await health(server)).status, 'ok')
    await waitFor(async () => (await trafficOf(server)).current_traffic_summary.unflushed_bytes === 0, 5000, 'flush after the outage')
    for (let k = 0; k < 4; k++) await fetchFor(server, uids[k]!, 'a.ts', got)

    assert.equal(await stopGracefully(server), 0)
    assert.deepEqual(new Map([...receiver.totals()].sort()), new Map([...got].sort()))
    assert.doesNotMatch(server.output(), /bytes_after_close|final flush or seal failed/)
  })

  it('down when the proxy starts: it listens and serves, degraded, and flushes once Redis answers', async (t) => {
    const { root, receiver, redis } = await setup(t)
    await redis.stop()
    const server = await serve(t, root, receiver, redis)
    // The log line goes to stdout, "listening" to stderr: they may arrive in either order.
    await waitFor(() => /redis store is unreachable/.test(server.output()), 5000, 'the start-up log names the outage')
    assert.deepEqual(await health(server), { code: 200, status: 'degraded' })
    const got = new Map<string, number>()
    await fetchFor(server, 'early', 'a.ts', got)
    await fetchFor(server, 'early', 'b.m4s', got)

    await redis.resume()
    await waitFor(async () => (await health(server)).status === 'ok', 10_000, '/health ok')
    await waitFor(async () => (await trafficOf(server)).current_traffic_summary.unflushed_bytes === 0, 5000, 'flush')
    assert.equal(await stopGracefully(server), 0)
    assert.deepEqual(receiver.totals(), got)
  })
})
