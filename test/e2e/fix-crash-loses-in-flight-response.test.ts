import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { it } from 'node:test'
import { request } from 'undici'
import { policyOf, resolveMeterOptions } from '../../src/meter/index.ts'
import { SqliteStore } from '../../src/store/index.ts'
import { startCliServer } from '../helpers/cli-server.ts'

const MiB = 1024 * 1024
const FLUSH_INTERVAL = 0.5 // seconds
const RATE = MiB // bytes per second the client reads

// Found: record() ran when a response ended, so a paused 64 MB download
// that had handed 3.9 MB to the socket over four flush intervals left
// nothing in the store after kill -9. A long response is now recorded as its
// bytes go out, at every flush.
it('kill -9 mid-download loses at most what was sent in the last flush interval', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sm-crash-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'movie.mp4'), Buffer.alloc(64 * MiB, 1))
  const db = join(dir, 'usage.db')
  const server = await startCliServer({
    ORIGIN_ROOT: dir,
    STORE_URL: `sqlite:${db}`,
    TRAFFIC_MIN_BYTES: '0',
    TRAFFIC_FLUSH_INTERVAL: String(FLUSH_INTERVAL),
    TRAFFIC_REPORT_INTERVAL: '3600'
  })
  t.after(() => { if (server.child.exitCode === null) server.child.kill('SIGKILL') })

  // A player reading at 1 MiB/s: the server writes only as fast as it reads.
  const { port } = new URL(server.url)
  const socket = connect(Number(port), '127.0.0.1')
  t.after(() => socket.destroy())
  let received = 0
  let paced = true
  const ended = new Promise<void>((resolve) => socket.on('close', () => resolve()))
  socket.on('data', (chunk: Buffer) => {
    received += chunk.length
    if (!paced) return
    socket.pause()
    setTimeout(() => socket.resume(), (chunk.length / RATE) * 1000)
  })
  socket.write('GET /movie.mp4?uid=dave HTTP/1.1\r\nHost: x\r\n\r\n')

  // What the server's socket has taken so far (/active-transfers counts it
  // in the same write callbacks the meter does), sampled until the kill.
  const samples: Array<{ at: number, bytes: number }> = []
  const until = performance.now() + 4000
  while (performance.now() < until) {
    const res = await request(`${server.url}/active-transfers`)
    const { transfers } = await res.body.json() as { transfers: Array<{ uid: string, bytes: number }> }
    const bytes = transfers.find((x) => x.uid === 'dave')?.bytes
    if (bytes !== undefined) samples.push({ at: performance.now(), bytes })
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const killedAt = performance.now()
  server.child.kill('SIGKILL')
  await server.exited
  // Read what the kernel still holds: the client ends with every byte the
  // server handed to its socket before it died.
  paced = false
  socket.resume()
  await ended
  const body = received - 200 // headers: about 200 bytes, well inside the bound below

  const store = new SqliteStore(db, policyOf(resolveMeterOptions({ minBytes: 0 })))
  t.after(() => store.close())
  const [record] = (await store.records()).filter((r) => r.uid === 'dave')
  const stored = record?.bytes ?? 0
  const lost = body - stored
  // The loss is bounded by what went out in the last flush interval: the
  // store holds at least what the socket had taken one interval (plus the
  // time a tick takes) before the kill.
  const cutoff = killedAt - FLUSH_INTERVAL * 1000 - 300
  const before = samples.filter((x) => x.at <= cutoff).at(-1)?.bytes ?? 0
  t.diagnostic(`client received ${body} body bytes; socket had taken ${before} one interval before the kill; store holds ${stored} (${lost} lost)`)
  assert.ok(before > 2 * MiB, `the download had barely started (${before} bytes)`)
  assert.ok(stored >= before, `store holds ${stored} bytes, the socket had taken ${before} one interval before the kill`)
  assert.ok(stored <= body + 1024, 'never more than was sent')
  assert.equal(record?.requests, 1, 'one response, one request')
})
