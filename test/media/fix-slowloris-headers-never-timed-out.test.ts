import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import type { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, it } from 'node:test'
import { request } from 'undici'
import { meteredBytes, startTestServer } from '../helpers/test-server.ts'

// With requestTimeout 0 and Node's default connection sweep, a client that
// sent its headers a byte at a time (or nothing at all) held a connection
// for a minute or more. docs/limits.md#requests: the headers must arrive within 30 s
// (shortened here to 0.5 s), then 408 in the JSON error shape and the
// connection is closed; a response being streamed is never cut by it.

const root = mkdtempSync(join(tmpdir(), 'sm-slowloris-'))
writeFileSync(join(root, 'a.ts'), Buffer.alloc(1000, 1))
writeFileSync(join(root, 'big.mp4'), Buffer.alloc(8 * 1024 * 1024, 2))
after(() => rmSync(root, { recursive: true, force: true }))

/** Open a connection, run `talk` on it, resolve with what came back and when it closed (ms). */
function slowClient (port: number, talk: (s: Socket) => void): Promise<{ answer: string, ms: number }> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    const started = performance.now()
    let answer = ''
    socket.on('data', (c: Buffer) => { answer += c.toString('latin1') })
    socket.on('error', () => {})
    socket.on('close', () => resolve({ answer, ms: performance.now() - started }))
    talk(socket)
    setTimeout(() => socket.destroy(), 10_000).unref() // the old code never closes them
  })
}

it('headers that do not arrive within the timeout get a JSON 408 and a closed connection; a long download is not cut', async (t) => {
  const server = await startTestServer({ root, headersTimeout: 0.5 })
  t.after(() => server.close())

  const dribble = (s: Socket): void => {
    s.write('GET /a.ts?uid=slow HTTP/1.1\r\n')
    const timer = setInterval(() => { if (!s.destroyed) s.write('X-Pad: a\r\n') }, 100)
    s.on('close', () => clearInterval(timer))
  }
  // A download slower than the headers timeout: 1 s before it starts reading.
  const download = new Promise<number>((resolve, reject) => {
    const s = connect(server.port, '127.0.0.1')
    s.pause()
    let bytes = 0
    s.on('data', (c: Buffer) => { bytes += c.length })
    s.on('error', reject)
    s.on('end', () => resolve(bytes))
    s.write('GET /big.mp4?uid=download HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
    setTimeout(() => s.resume(), 1000)
  })
  const clients = await Promise.all([
    slowClient(server.port, () => {}), // connects and says nothing
    slowClient(server.port, (s) => { s.write('GET /a.ts?ui') }), // half a request line
    slowClient(server.port, dribble) // a header line every 100 ms, never the blank line
  ])
  for (const { answer, ms } of clients) {
    assert.ok(ms < 3000, `closed after ${Math.round(ms)} ms`)
    assert.match(answer, /^HTTP\/1\.1 408 /)
    const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as unknown
    assert.deepEqual(body, { error: { code: 'SM_ERR_REQUEST_TIMEOUT', message: 'the request headers did not arrive in time' } })
  }
  const received = await download
  assert.ok(received > 8 * 1024 * 1024, `the download got ${received} bytes`)

  // The server goes on answering, and the slow clients were never metered.
  const res = await request(`${server.url}/a.ts?uid=fast`)
  assert.equal((await res.body.arrayBuffer()).byteLength, 1000)
  const metered = await meteredBytes(server)
  assert.equal(metered.get('slow'), undefined)
  assert.equal(metered.get('download'), 8 * 1024 * 1024)
})
