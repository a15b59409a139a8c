import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { Agent, request } from 'undici'
import { startCliServer } from '../helpers/cli-server.ts'
import type { CliServer } from '../helpers/cli-server.ts'
import { Receiver } from '../helpers/receiver.ts'
import { REDIS_URL, cleanupPrefix, redisOrSkip, uniquePrefix } from '../helpers/redis.ts'
import { waitFor } from '../helpers/wait.ts'

const KiB = 1024
const MiB = 1024 * KiB
const SEGMENT = 100 * KiB
const main = new URL('../../src/cli/main.ts', import.meta.url).pathname

/** The media the tests fetch, written into `dir`. */
function writeMedia (dir: string): void {
  writeFileSync(join(dir, 'seg.ts'), Buffer.alloc(SEGMENT, 7))
  writeFileSync(join(dir, 'movie.mp4'), Buffer.alloc(4 * MiB, 1))
}

/** A fresh directory with the media, removed when the test ends. */
function mediaDir (t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'sm-workers-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  writeMedia(dir)
  return dir
}

/** `serve --workers 2` on a sqlite store in `dir` (unless `env` names another), reporting to `receiver`. */
async function startTwoWorkers (dir: string, receiver: Receiver, env: Record<string, string> = {}): Promise<CliServer> {
  return await startCliServer({
    ORIGIN_ROOT: dir,
    STORE_URL: `sqlite:${join(dir, 'meter.db')}`,
    TRAFFIC_REPORT_URL: receiver.url,
    TRAFFIC_REPORT_INTERVAL: '1',
    TRAFFIC_FLUSH_INTERVAL: '0.2',
    SHUTDOWN_GRACE: '3',
    WORKERS: '2',
    ...env
  })
}

/** SIGKILL the service, workers first (a killed primary would leave them to node's own exit). */
async function killService (server: CliServer): Promise<void> {
  if (server.child.exitCode !== null || server.child.signalCode !== null) return
  for (const pid of await workerPids(server)) process.kill(pid, 'SIGKILL')
  server.child.kill('SIGKILL')
  await server.exited
}

/** {@link startTwoWorkers}, killed when the test ends if it still runs. */
async function twoWorkers (t: TestContext, dir: string, receiver: Receiver, env: Record<string, string> = {}): Promise<CliServer> {
  const server = await startTwoWorkers(dir, receiver, env)
  t.after(() => killService(server))
  return server
}

/** Report POSTs beyond the first with the same Idempotency-Key. */
function postedTwice (receiver: Receiver): number {
  const keys = receiver.requests.map((r) => String(r.headers['idempotency-key']))
  return keys.length - new Set(keys).size
}

/** GET on a connection of its own: the cluster hands each new connection to the next worker. */
async function fresh (url: string): Promise<{ status: number, body: Buffer }> {
  const agent = new Agent({ connections: 1 })
  try {
    const res = await request(url, { dispatcher: agent })
    const body = Buffer.from(await res.body.arrayBuffer())
    return { status: res.statusCode, body }
  } finally {
    await agent.close()
  }
}

/** `worker_id` of whichever worker answers a new connection (`<host>-<pid>`). */
async function workerId (server: CliServer): Promise<string> {
  const res = await fresh(`${server.url}/health`)
  assert.equal(res.status, 200)
  return (JSON.parse(res.body.toString()) as { worker_id: string }).worker_id
}

/** The pids of the workers answering now (seen over a few new connections). */
async function workerPids (server: CliServer): Promise<number[]> {
  const ids = new Set<string>()
  for (let i = 0; i < 6; i++) ids.add(await workerId(server).catch(() => ''))
  ids.delete('')
  return [...ids].map((id) => Number(id.slice(id.lastIndexOf('-') + 1)))
}

describe('serve --workers 2 on a sqlite store', () => {
  describe('one service, run on', () => {
    let server: CliServer
    let receiver: Receiver
    let dir: string
    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'sm-workers-'))
      writeMedia(dir)
      receiver = await Receiver.start()
      server = await startTwoWorkers(dir, receiver)
    })
    after(async () => {
      await killService(server)
      await receiver.close()
      rmSync(dir, { recursive: true, force: true })
    })

    it('both workers answer; a uid fetched through 20 connections is reported once, summed over both, exactly', async () => {
      assert.equal(server.output().match(/listening on/g)?.length, 1, 'one startup line for the whole service')
      const ids = new Set<string>()
      for (let i = 0; i < 4; i++) ids.add(await workerId(server))
      assert.equal(ids.size, 2, `new connections went to ${[...ids].join(', ')}`)

      // 20 × 100 KiB: about 1000 KiB through each worker, under the 1 MiB
      // threshold alone; only the sum in the shared store qualifies.
      for (let i = 0; i < 20; i++) {
        const res = await fresh(`${server.url}/seg.ts?uid=alice`)
        assert.equal(res.body.length, SEGMENT)
      }
      await waitFor(() => receiver.totals().has('alice'), 8000, 'alice reported')
      // A later window: once bob's bytes are in, every window holding alice's has gone out.
      await fresh(`${server.url}/movie.mp4?uid=bob`)
      await waitFor(() => receiver.totals().has('bob'), 8000, 'bob reported')

      assert.deepEqual(Object.fromEntries(receiver.totals()), { alice: 20 * SEGMENT, bob: 4 * MiB })
      const alice = receiver.reports.flatMap((r) => r.traffic_details as Array<{ uid: string, request_count: number }>).filter((d) => d.uid === 'alice')
      assert.equal(alice.length, 1, 'alice is in one report')
      assert.equal(alice[0]!.request_count, 20)
      assert.equal(postedTwice(receiver), 0, 'one reporter: no report was posted twice')

      // Exactly one worker holds the reporter lease.
      const reporters = new Map<string, boolean>()
      await waitFor(async () => {
        const res = await fresh(`${server.url}/traffic`)
        const doc = JSON.parse(res.body.toString()) as { worker_id: string, current_state: { is_reporter: boolean } }
        reporters.set(doc.worker_id, doc.current_state.is_reporter)
        return reporters.size === 2
      }, 5000, 'both workers seen on /traffic')
      assert.deepEqual([...reporters.values()].sort(), [false, true])
    })

    it('SIGKILL of a worker: the primary starts a new one and the service keeps answering and reporting', async () => {
      const before = await workerPids(server)
      assert.equal(before.length, 2)
      const [victim, survivor] = before as [number, number]

      process.kill(victim, 'SIGKILL')
      await waitFor(() => server.output().includes(`(pid ${victim}) was killed by SIGKILL; starting a new one`), 5000, 'the death logged')
      // Meanwhile the other worker takes every new connection.
      for (let i = 0; i < 3; i++) assert.equal((await fresh(`${server.url}/seg.ts?uid=carol`)).body.length, SEGMENT)
      await waitFor(() => /worker \d is serving again \(pid \d+\)/.test(server.output()), 10_000, 'a replacement')
      const after = await workerPids(server)
      assert.equal(after.length, 2)
      assert.ok(after.includes(survivor), 'the other worker was left alone')
      assert.ok(!after.includes(victim))
      assert.equal((await fresh(`${server.url}/movie.mp4?uid=carol`)).body.length, 4 * MiB)
      await waitFor(() => receiver.totals().get('carol') === 3 * SEGMENT + 4 * MiB, 8000, 'carol reported')
    })
  })

  it('SIGTERM to the primary: streams on both workers finish, every worker stops, exit 0, every byte delivered', async (t) => {
    const dir = mediaDir(t)
    const receiver = await Receiver.start()
    t.after(() => receiver.close())
    // Only the stop seals: every byte below is in the final window.
    const server = await twoWorkers(t, dir, receiver, { TRAFFIC_REPORT_INTERVAL: '3600', TRAFFIC_MIN_BYTES: '0', SHUTDOWN_GRACE: '8' })
    const pids = await workerPids(server)
    assert.equal(pids.length, 2)

    // Two slow downloads on two connections, so one on each worker, still streaming at SIGTERM.
    let started = 0
    const downloads = ['dave', 'erin'].map(async (uid) => {
      const agent = new Agent({ connections: 1 })
      try {
        const res = await request(`${server.url}/movie.mp4?uid=${uid}`, { dispatcher: agent })
        started++
        let got = 0
        for await (const chunk of res.body as AsyncIterable<Buffer>) {
          got += chunk.length
          if (got < 2 * MiB) await new Promise((resolve) => setTimeout(resolve, 10))
        }
        return [uid, got] as const
      } finally {
        await agent.close()
      }
    })
    for (let i = 0; i < 4; i++) await fresh(`${server.url}/seg.ts?uid=frank`)
    await waitFor(() => started === 2, 5000, 'both downloads streaming')
    server.child.kill('SIGTERM')

    for (const [uid, got] of await Promise.all(downloads)) assert.equal(got, 4 * MiB, `${uid} was cut`)
    assert.equal(await server.exited, 0, server.output())
    assert.match(server.output(), /streammeter serve: stopped/)
    for (const pid of pids) assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `worker ${pid} still runs`)
    assert.deepEqual(Object.fromEntries(receiver.totals()), { dave: 4 * MiB, erin: 4 * MiB, frank: 4 * SEGMENT })
    assert.equal(postedTwice(receiver), 0, 'no report was posted twice')
  })
})

describe('serve --workers 2 on a redis store', () => {
  it('one uid through both workers: reported once, exactly; SIGTERM stops both, exit 0', async (t) => {
    if (!await redisOrSkip(t)) return
    const dir = mediaDir(t)
    const receiver = await Receiver.start()
    t.after(() => receiver.close())
    const prefix = uniquePrefix('workers')
    cleanupPrefix(t, prefix)
    const server = await twoWorkers(t, dir, receiver, { STORE_URL: REDIS_URL, STORE_PREFIX: prefix })
    for (let i = 0; i < 20; i++) assert.equal((await fresh(`${server.url}/seg.ts?uid=gina`)).body.length, SEGMENT)
    await waitFor(() => receiver.totals().has('gina'), 8000, 'gina reported')
    server.child.kill('SIGTERM')
    assert.equal(await server.exited, 0, server.output())
    assert.deepEqual(Object.fromEntries(receiver.totals()), { gina: 20 * SEGMENT })
    assert.equal(postedTwice(receiver), 0, 'no report was posted twice')
  })
})

describe('serve --workers: what stops the start', () => {
  /** `streammeter serve` with `env` only, to its exit. */
  async function serve (env: Record<string, string>): Promise<{ code: number | null, err: string }> {
    const child = spawn(process.execPath, ['--import', 'tsx', main, 'serve'], {
      env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'warn', ...env },
      stdio: ['ignore', 'ignore', 'pipe']
    })
    let err = ''
    child.stderr.on('data', (c: Buffer) => { err += c.toString() })
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
    return { code, err }
  }

  it('the memory: store with 2 workers is a configuration error: exit 2, naming WORKERS and STORE_URL', async () => {
    const { code, err } = await serve({ WORKERS: '2', STORE_URL: 'memory:' })
    assert.equal(code, 2, err)
    assert.match(err, /WORKERS=2/)
    assert.match(err, /STORE_URL=memory:/)
    assert.doesNotMatch(err, /listening on/)
  })

  it('workers that cannot open the store: the primary gives up at once with exit 1, no restart loop', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sm-workers-'))
    t.after(() => rmSync(dir, { recursive: true, force: true }))
    writeFileSync(join(dir, 'not-a-directory'), '')
    const { code, err } = await serve({ WORKERS: '2', ORIGIN_ROOT: dir, STORE_URL: `sqlite:${join(dir, 'not-a-directory', 'meter.db')}` })
    assert.equal(code, 1, err)
    assert.match(err, /could not start/)
    assert.match(err, /worker \d \(pid \d+\) exited with code 1 while starting; stopping/)
    assert.doesNotMatch(err, /starting a new one/)
  })
})
