import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { connect } from 'node:net'
import type { AddressInfo, Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { request } from 'undici'
import { SendTimeout } from '../../src/server/media/send-timeout.ts'
import { TransferRegistry } from '../../src/server/media/transfers.ts'
import type { ServerResponse } from 'node:http'
import { startStaticOrigin } from '../helpers/static-origin.ts'
import { meteredBytes, startTestServer } from '../helpers/test-server.ts'
import type { TestServer } from '../helpers/test-server.ts'
import { waitFor } from '../helpers/wait.ts'

// Clients that stopped reading were never timed out: 40 stalled clients of
// one URL held 0.8 MB and two descriptors each, for good. docs/limits.md#requests: a
// client that takes no bytes for SEND_TIMEOUT is disconnected and what its
// socket took is metered; the clock runs only while a write waits for the
// socket, never while the origin is slow.

const MiB = 1024 * 1024
const FILE = 16 * MiB // well past what a paused loopback connection's kernel buffers take (about 4 MiB)
const root = mkdtempSync(join(tmpdir(), 'sm-stalled-'))
writeFileSync(join(root, 'big.mp4'), Buffer.alloc(FILE, 3))
writeFileSync(join(root, 'small.ts'), Buffer.alloc(2000, 4))
after(() => rmSync(root, { recursive: true, force: true }))

/** A client that sends its request and then reads nothing until `drain()`. */
interface StalledClient {
  socket: Socket
  /** Read everything the connection still delivers; resolves with the body bytes once the server's FIN arrives. */
  drain: () => Promise<number>
}

function stalledClient (port: number, target: string, forwardedFor: string): StalledClient {
  const socket = connect(port, '127.0.0.1')
  socket.pause()
  socket.on('error', () => {})
  socket.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: ${forwardedFor}\r\n\r\n`)
  const drain = (): Promise<number> => new Promise((resolve) => {
    // Counted, not kept: hundreds of clients each get megabytes.
    let head: Buffer | undefined = Buffer.alloc(0)
    let body = 0
    socket.on('data', (c: Buffer) => {
      if (head === undefined) {
        body += c.length
        return
      }
      head = Buffer.concat([head, c])
      const end = head.indexOf('\r\n\r\n')
      if (end !== -1) {
        body = head.length - end - 4
        head = undefined
      }
    })
    socket.on('close', () => resolve(body))
    socket.resume()
  })
  return { socket, drain }
}

function limitHits (metrics: string, limit: string): number {
  return Number(new RegExp(`^streammeter_limit_hits_total\\{limit="${limit}"\\} (\\d+)$`, 'm').exec(metrics)?.[1] ?? 0)
}

/**
 * Stall `count` clients (each its own IP through a trusted proxy, its own
 * uid), wait until the server cut them all, then read what each received.
 * Checks the cut, the metering, and that the server answered others meanwhile.
 */
async function stallAndCut (server: TestServer, target: (i: number) => string, count: number): Promise<{ inFlightMs: number, otherMs: number }> {
  const clients: StalledClient[] = []
  for (let i = 0; i < count; i++) clients.push(stalledClient(server.port, target(i), `10.1.${i >> 8}.${i & 255}`))
  after(() => { for (const c of clients) c.socket.destroy() })
  const t0 = performance.now()
  await waitFor(() => server.app.transfers.size === count, 20_000, `${count} transfers in flight`)
  const inFlightMs = performance.now() - t0

  // While they stall, others are served.
  const started = performance.now()
  const other = await request(`${server.url}/small.ts?uid=other`, { headers: { 'x-forwarded-for': '192.0.2.1' } })
  assert.equal((await other.body.arrayBuffer()).byteLength, 2000)
  const otherMs = performance.now() - started

  // Straight from the registry: /metrics is closed to everyone when a
  // trusted proxy can be a loopback peer and no ADMIN_TOKEN is set.
  const cut = async (): Promise<number> => limitHits(await server.app.metrics.registry.metrics(), 'send_timeout')
  await waitFor(async () => server.app.transfers.size === 0 && await cut() === count, 20_000, 'every stalled transfer cut')
  const metered = await meteredBytes(server)
  const received = await Promise.all(clients.map((c) => c.drain()))
  let totalMetered = 0
  for (let i = 0; i < count; i++) {
    const m = metered.get(`s${i}`) ?? 0
    const r = received[i]!
    totalMetered += m
    // Exactly what the client can still read off its connection: every
    // byte the kernel took before the cut, none of the rest.
    assert.equal(m, r, `client ${i}: metered ${m}, received ${r}`)
    assert.ok(m > 0)
    assert.ok(r < FILE, `client ${i} received the whole file: it was never cut`)
  }
  const text = await server.app.metrics.registry.metrics()
  assert.equal(limitHits(text, 'send_timeout'), count)
  assert.match(text, new RegExp(`^streammeter_bytes_sent_total\\{file_type="${target(0).includes('.m3u8') ? 'm3u8' : 'mp4'}"\\} ${totalMetered}$`, 'm'))
  assert.ok(otherMs < 2000, `another client waited ${Math.round(otherMs)} ms`)
  return { inFlightMs, otherMs }
}

describe('slow readers are timed out', () => {
  it('the sweep: cut after the timeout without progress; any progress, or nothing waiting, restarts the clock', () => {
    let now = 0
    const transfers = new TransferRegistry()
    const socket = { destroyed: false, writableLength: 0, _handle: { writeQueueSize: 0 } }
    let destroyed = 0
    const response = { socket, destroy: () => { destroyed++ } } as unknown as ServerResponse
    const t = transfers.open({ uid: 'u', path: '/a', fileType: 'mp4', ip: '1.2.3.4', sessionId: undefined, startedAt: 0, total: undefined, response })
    const timeout = new SendTimeout(transfers, { timeout: 1000, now: () => now })
    // Nothing waits (the origin is slow): never cut.
    for (now = 0; now <= 5000; now += 250) assert.equal(timeout.sweep(), 0)
    // A write waits and the socket takes nothing.
    socket.writableLength = 262144
    socket._handle.writeQueueSize = 3713
    now = 6000; assert.equal(timeout.sweep(), 0)
    now = 6900; assert.equal(timeout.sweep(), 0)
    // The kernel took part of the write: progress.
    socket._handle.writeQueueSize = 1000
    now = 7100; assert.equal(timeout.sweep(), 0)
    now = 8000; assert.equal(timeout.sweep(), 0)
    // A write callback counted bytes: progress.
    t.bytes = 262144
    now = 8050; assert.equal(timeout.sweep(), 0)
    now = 9049; assert.equal(timeout.sweep(), 0)
    assert.equal(destroyed, 0)
    now = 9050; assert.equal(timeout.sweep(), 1)
    assert.equal(destroyed, 1)
  })

  it('200 stalled clients of one file, each its own IP through a trusted proxy: all cut, metered, others served', async (t) => {
    // The timeout leaves time for all of them to connect and stall first.
    const server = await startTestServer({ root, sendTimeout: 4, trustedProxies: ['127.0.0.1'] })
    t.after(() => server.close())
    const rssBefore = process.memoryUsage.rss()
    const { inFlightMs, otherMs } = await stallAndCut(server, (i) => `/big.mp4?uid=s${i}`, 200)
    t.diagnostic(`200 stalled in ${Math.round(inFlightMs)} ms; another request meanwhile ${Math.round(otherMs)} ms; RSS ${(rssBefore / MiB).toFixed(0)} → ${(process.memoryUsage.rss() / MiB).toFixed(0)} MiB (test and server in one process)`)
  })

  it('the HTTP origin\'s body: stalled clients are cut and the origin requests released', async (t) => {
    const origin = await startStaticOrigin(root)
    const server = await startTestServer({ originUrl: origin.url, sendTimeout: 1, trustedProxies: ['127.0.0.1'] })
    t.after(async () => {
      await server.close()
      await origin.close()
    })
    await stallAndCut(server, (i) => `/big.mp4?uid=s${i}`, 10)
  })

  it('a rewritten playlist (the buffer path, which waits after end()): stalled clients are cut', async (t) => {
    const lines = ['#EXTM3U', '#EXT-X-TARGETDURATION:2']
    for (let i = 0; i < 60_000; i++) lines.push('#EXTINF:2,', `s${i}.ts`)
    writeFileSync(join(root, 'long.m3u8'), lines.join('\n') + '\n')
    const server = await startTestServer({ root, sendTimeout: 2, trustedProxies: ['127.0.0.1'], playlistMaxBytes: 4 * MiB })
    t.after(() => server.close())
    // One write of the whole body, of which the kernel took a part.
    await stallAndCut(server, (i) => `/long.m3u8?uid=s${i}&sid=${'x'.repeat(60)}`, 5)
  })

  it('a slow origin is not a slow client: a body that trickles for longer than the timeout is delivered whole', async (t) => {
    const origin = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': String(12 * 1000) })
      let sent = 0
      const timer = setInterval(() => {
        res.write(Buffer.alloc(1000, 9))
        if (++sent === 12) {
          clearInterval(timer)
          res.end()
        }
      }, 100)
    })
    await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve))
    const server = await startTestServer({ originUrl: `http://127.0.0.1:${(origin.address() as AddressInfo).port}/`, sendTimeout: 0.3 })
    t.after(async () => {
      await server.close()
      await new Promise((resolve) => origin.close(resolve))
    })
    const res = await request(`${server.url}/trickle.mp4?uid=patient`)
    assert.equal((await res.body.arrayBuffer()).byteLength, 12_000)
    assert.equal((await meteredBytes(server)).get('patient'), 12_000)
  })
})
