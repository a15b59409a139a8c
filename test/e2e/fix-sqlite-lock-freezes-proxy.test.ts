import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { it } from 'node:test'
import { Agent, request } from 'undici'
import { policyOf, resolveMeterOptions } from '../../src/meter/index.ts'
import { SqliteStore } from '../../src/store/index.ts'
import { startCliServer } from '../helpers/cli-server.ts'

const locker = new URL('../fixtures/sqlite-locker.ts', import.meta.url).pathname
const HOLD_MS = 10_000
const FILE_BYTES = 8192

// Found: the store waited for SQLite's busy timeout (5 s) on the event loop;
// another process holding the write lock for 4 s made an unrelated small
// request take 3.2 s. Now a locked database is retried on a timer.
it('another process holding the SQLite write lock for 10 s does not hold up requests, and nothing is lost', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sm-lock-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'seg.ts'), Buffer.alloc(FILE_BYTES, 7))
  const db = join(dir, 'usage.db')
  const server = await startCliServer({
    ORIGIN_ROOT: dir,
    STORE_URL: `sqlite:${db}`,
    TRAFFIC_MIN_BYTES: '0',
    TRAFFIC_FLUSH_INTERVAL: '0.2',
    TRAFFIC_REPORT_INTERVAL: '3600'
  })
  t.after(() => { if (server.child.exitCode === null) server.child.kill('SIGKILL') })
  const agent = new Agent({ connections: 4 })
  t.after(() => agent.close())

  let received = 0
  const fetchOne = async (uid: string): Promise<number> => {
    const started = performance.now()
    const res = await request(`${server.url}/seg.ts?uid=${uid}`, { dispatcher: agent })
    const body = Buffer.from(await res.body.arrayBuffer())
    assert.equal(res.statusCode, 200)
    received += body.length
    return performance.now() - started
  }
  await fetchOne('warm')

  const child = spawn(process.execPath, ['--import', 'tsx', locker, db, String(HOLD_MS)], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.after(() => child.kill('SIGKILL'))
  let lockerOut = ''
  const released = new Promise<void>((resolve) => child.stdout.on('data', (c: Buffer) => {
    lockerOut += c.toString()
    if (lockerOut.includes('released')) resolve()
  }))
  await new Promise<void>((resolve) => {
    const check = (): void => { if (lockerOut.includes('locked')) resolve() }
    child.stdout.on('data', check)
  })

  // Two clients fetch back to back for as long as the lock is held.
  const latencies: number[] = []
  const lock = { held: true }
  released.then(() => { lock.held = false }, () => {})
  const client = async (n: number): Promise<void> => {
    for (let i = 0; lock.held; i++) latencies.push(await fetchOne(`u${n}-${i % 5}`))
  }
  await Promise.all([client(1), client(2)])
  latencies.sort((a, b) => a - b)
  const p99 = latencies[Math.floor(latencies.length * 0.99)] ?? Infinity
  const max = latencies[latencies.length - 1] ?? Infinity
  t.diagnostic(`${latencies.length} requests while locked: p99 ${p99.toFixed(1)} ms, max ${max.toFixed(1)} ms`)
  assert.ok(latencies.length > 100, `only ${latencies.length} requests in ${HOLD_MS} ms`)
  assert.ok(p99 < 100, `p99 ${p99.toFixed(1)} ms while another process held the lock`)

  // Everything the clients received is in the store after a graceful stop.
  server.child.kill('SIGTERM')
  assert.equal(await server.exited, 0, server.output())
  const store = new SqliteStore(db, policyOf(resolveMeterOptions({ minBytes: 0 })))
  t.after(() => store.close())
  let stored = 0
  for (const r of await store.records()) stored += r.bytes
  for (const e of await store.outbox()) stored += e.bytes
  assert.equal(stored, received)
})
