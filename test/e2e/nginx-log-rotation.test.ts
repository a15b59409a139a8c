import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { request } from 'undici'
import { TrafficCollector, policyOf, resolveMeterOptions, silentLogger } from '../../src/meter/index.ts'
import { MemoryStore, openStore } from '../../src/store/index.ts'
import { ClientIpResolver } from '../../src/server/access/client-ip.ts'
import { signToken } from '../../src/server/access/url-signer.ts'
import { MeteringInput } from '../../src/server/metering/metering-input.ts'
import { AccessLogReader } from '../../src/server/nginx/access-log-reader.ts'
import { generationOf } from '../../src/server/nginx/log-rotation.ts'
import { NginxSupervisor } from '../../src/server/nginx/nginx-supervisor.ts'
import { nginxOrSkip, writeTestConfig } from '../helpers/own-nginx.ts'
import { freePort } from '../helpers/own-redis.ts'
import { REDIS_URL, cleanupPrefix, redisOrSkip, uniquePrefix } from '../helpers/redis.ts'
import { storeTotals } from '../helpers/report-bytes.ts'
import { waitFor } from '../helpers/wait.ts'

const SECRET = 'rotation secret'
const LATER = Math.floor(Date.now() / 1000) + 3600
/** Media files of known, different sizes. */
const SIZES = [1000, 3333, 10_000, 20_011, 47_111]
/** Rotate past 8 KiB: about 30 lines per generation. */
const MAX_BYTES = 8 * 1024

const root = mkdtempSync(join(tmpdir(), 'sm-rotation-media-'))
SIZES.forEach((size, i) => { writeFileSync(join(root, `seg${i}.ts`), Buffer.alloc(size, i)) })
after(() => rmSync(root, { recursive: true, force: true }))

const rotatedIn = (dir: string): string[] => readdirSync(dir).filter((n) => /^access\.log\.\d+$/.test(n))

/** nginx with the engine's configuration, run by the supervisor (which reopens its logs on USR1). */
async function nginxRig (t: TestContext): Promise<{ dir: string, log: string, url: string, supervisor: NginxSupervisor }> {
  const dir = mkdtempSync(join(tmpdir(), 'sm-rotation-'))
  const log = join(dir, 'access.log')
  // As the engine does: the log is created owner-only before nginx starts.
  writeFileSync(log, '', { mode: 0o600 })
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const conf = writeTestConfig(dir, port, { root, signingSecret: SECRET })
  const supervisor = new NginxSupervisor({ dir, conf, logger: silentLogger, ready: () => fetch(`${url}/`).then(() => true, () => false) })
  t.after(async () => {
    await supervisor.stop(2000)
    rmSync(dir, { recursive: true, force: true })
  })
  await supervisor.start()
  return { dir, log, url, supervisor }
}

/** Concurrent clients, one uid each, downloading whole files until stopped; what each received. */
function load (url: string, clients: number, pauseMs: number): { received: Map<string, number>, requests: () => number, stop: () => Promise<void> } {
  const received = new Map<string, number>()
  let requests = 0
  const state = { stopped: false }
  const run = async (c: number): Promise<void> => {
    const uid = `u${c}`
    for (let i = c; !state.stopped; i++) {
      const path = `seg${i % SIZES.length}.ts`
      const res = await request(`${url}/${path}?uid=${uid}&expires=${LATER}&token=${signToken(SECRET, uid, path, LATER)}`)
      const body = await res.body.arrayBuffer()
      assert.equal(res.statusCode, 200)
      received.set(uid, (received.get(uid) ?? 0) + body.byteLength)
      requests++
      await new Promise((resolve) => setTimeout(resolve, pauseMs))
    }
  }
  const all = Promise.all(Array.from({ length: clients }, (_, c) => run(c)))
  return {
    received,
    requests: () => requests,
    stop: async () => {
      state.stopped = true
      await all
      // nginx writes a response's line as it finishes it, just after the last byte.
      await new Promise((resolve) => setTimeout(resolve, 300))
    }
  }
}

describe('rotating the nginx access log under load', () => {
  it('meters every uid exactly while the log rotates many times, and leaves no rotated file', async (t) => {
    if (!nginxOrSkip(t)) return
    const { dir, log, url, supervisor } = await nginxRig(t)
    const options = resolveMeterOptions({ minBytes: 0, flushInterval: 0.05, reportInterval: 3600, workerId: 'rotation-e2e' })
    const store = new MemoryStore(policyOf(options))
    const collector = new TrafficCollector(options, { store })
    const bad: string[] = []
    const reader = new AccessLogReader({
      path: log,
      key: 'nginx:rotation-e2e',
      metering: new MeteringInput(collector, Date.now),
      ips: new ClientIpResolver(),
      onBadLine: (line) => bad.push(line),
      // Rotated in the reads (no timer tick comes first), which go on to the
      // renamed file's end at once: nginx's workers have not reopened yet.
      rotate: { maxBytes: MAX_BYTES, interval: 60_000, reopen: () => { supervisor.reopenLogs() } }
    })
    reader.attach(collector)
    collector.start()
    t.after(async () => {
      reader.close()
      await collector.close({ grace: 1 })
    })

    const clients = load(url, 24, 5)
    await new Promise((resolve) => setTimeout(resolve, 2000))
    await clients.stop()
    const requests = async (): Promise<number> => (await store.records()).reduce((n, r) => n + r.requests, 0)
    await waitFor(async () => await requests() === clients.requests() && reader.rotatedFiles === 0, 10_000, 'every line read and every rotated file deleted')

    const metered = new Map((await store.records()).map((r) => [r.uid, r.bytes]))
    assert.deepEqual(new Map([...metered].sort()), new Map([...clients.received].sort()))
    assert.ok(reader.rotations >= 10, `rotated ${reader.rotations} times`)
    assert.deepEqual(rotatedIn(dir), [])
    assert.deepEqual(bad, [])
    assert.equal(statSync(log).mode & 0o777, 0o600, 'the live file nginx reopened is still owner-only')
  })

  for (const kind of ['sqlite', 'redis'] as const) {
    it(`${kind} store: exact across kill -9 of the reader while the log rotates`, async (t) => {
      if (!nginxOrSkip(t)) return
      if (kind === 'redis' && !await redisOrSkip(t)) return
      await killedWhileRotating(t, kind)
    })
  }
})

const child = new URL('../fixtures/rotating-log-meter-child.ts', import.meta.url).pathname

/** Start the metering child and wait for its `ready` line; its process group is killed after the test. */
async function startChild (t: TestContext, args: string[]): Promise<{ proc: ChildProcess, out: () => string }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', child, ...args], { stdio: ['ignore', 'pipe', 'inherit'], detached: true })
  t.after(() => { try { process.kill(-(proc.pid ?? 0), 'SIGKILL') } catch {} })
  let out = ''
  await new Promise<void>((resolve, reject) => {
    proc.stdout?.on('data', (c: Buffer) => {
      out += c.toString()
      if (out.includes('ready')) resolve()
    })
    proc.once('exit', (code) => reject(new Error(`the child exited ${code} before it was ready`)))
  })
  return { proc, out: () => out }
}

async function killedWhileRotating (t: TestContext, kind: 'sqlite' | 'redis'): Promise<void> {
  const { dir, log, url } = await nginxRig(t)
  const prefix = uniquePrefix('log-rotation')
  if (kind === 'redis') cleanupPrefix(t, prefix)
  const storeUrl = kind === 'redis' ? REDIS_URL : `sqlite:${join(dir, 'usage.db')}`
  const args = [storeUrl, log, prefix, join(dir, 'nginx.pid')]

  const clients = load(url, 16, 5)
  let metering = await startChild(t, args)
  for (let round = 0; round < 4; round++) {
    // Killed at an arbitrary moment: mid-read, mid-batch, between a rename and its reopen.
    await new Promise((resolve) => setTimeout(resolve, 250 + (round * 137) % 300))
    metering.proc.kill('SIGKILL')
    await new Promise((resolve) => metering.proc.once('exit', resolve))
    await new Promise((resolve) => setTimeout(resolve, 100)) // written while nobody reads or rotates
    metering = await startChild(t, args)
  }
  // The load goes on until the committed position is ten generations in
  // (a busy machine writes fewer lines in a fixed time).
  const watch = await openStore(storeUrl, policyOf(resolveMeterOptions({ minBytes: 0 })), { prefix })
  try {
    await waitFor(async () => generationOf((await watch.logCursor('nginx:rotating-child')).position) >= 10, 30_000, 'ten generations')
  } finally {
    await watch.close()
  }
  await clients.stop()
  const exited = new Promise<number | null>((resolve) => metering.proc.once('exit', resolve))
  metering.proc.kill('SIGTERM')
  assert.equal(await exited, 0)
  const closed = /closed (\d+) (\d+) (\d+)/.exec(metering.out())
  assert.ok(closed !== null, metering.out())
  assert.equal(closed[2], '0', 'no rotated file left')
  assert.ok(generationOf(Number(closed[3])) >= 10, `only ${generationOf(Number(closed[3]))} generations`)
  assert.deepEqual(rotatedIn(dir), [])

  const store = await openStore(storeUrl, policyOf(resolveMeterOptions({ minBytes: 0 })), { prefix })
  try {
    // The graceful stop sealed the window: the usage is in reports, plus any records left.
    const { bytes: metered, requests } = await storeTotals(store)
    assert.deepEqual(new Map([...metered].sort()), new Map([...clients.received].sort()))
    assert.equal(requests, clients.requests())
  } finally {
    await store.close()
  }
}
