import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { it } from 'node:test'
import { request } from 'undici'
import { rssOf, startCliServer } from '../helpers/cli-server.ts'
import { startStaticOrigin } from '../helpers/static-origin.ts'

const MiB = 1024 * 1024

// Both origins: the filesystem one reads the next chunk only once the socket
// took the last; the HTTP one pauses the origin socket while the client's is full.
for (const kind of ['filesystem', 'http'] as const) {
  it(`a slow client reading 64 KiB/s from a 64 MiB file (${kind} origin): the server's RSS stays flat`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sm-rss-'))
    t.after(() => rmSync(dir, { recursive: true, force: true }))
    writeFileSync(join(dir, 'big.mp4'), Buffer.alloc(64 * MiB, 5))
    writeFileSync(join(dir, 'warm.mp4'), Buffer.alloc(MiB, 6))
    const http = kind === 'http' ? await startStaticOrigin(dir) : undefined
    const server = await startCliServer({ ...(http !== undefined ? { ORIGIN_URL: http.url } : { ORIGIN_ROOT: dir }), STORE_URL: 'memory:' })
    t.after(async () => {
      server.child.kill('SIGKILL')
      await server.exited
      // Only now: the origin waits for the response it is still sending to streammeter.
      await http?.close()
    })
    const port = Number(new URL(server.url).port)
    const pid = server.child.pid as number

    // One whole response first, over the same path: the code a first
    // request compiles and the buffers it pools are then in the baseline,
    // not counted as growth (under load they alone came near the bound).
    const warm = await request(`${server.url}/warm.mp4?uid=warm`)
    await warm.body.arrayBuffer()
    // Before the slow request: a server that buffered the file (or had it all
    // in flight) by the first sample would otherwise hide it in its baseline.
    const baseline = await rssOf(pid)

    // A raw client that reads 16 KiB every 250 ms (64 KiB/s) and otherwise
    // leaves the socket paused, so TCP backpressure reaches the server.
    const socket = connect({ port, host: '127.0.0.1' })
    t.after(() => socket.destroy())
    socket.pause()
    socket.write('GET /big.mp4?uid=slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
    let read = 0
    const reader = setInterval(() => {
      let chunk: Buffer | null
      let budget = 16 * 1024
      while (budget > 0 && (chunk = socket.read(Math.min(budget, socket.readableLength || budget)) as Buffer | null) !== null) {
        read += chunk.length
        budget -= chunk.length
      }
    }, 250)
    t.after(() => clearInterval(reader))

    const samples: number[] = []
    for (let i = 0; i < 15; i++) {
      await new Promise((resolve) => setTimeout(resolve, 500))
      samples.push(await rssOf(pid))
    }
    const peak = Math.max(...samples)
    t.diagnostic(`client read ${(read / 1024).toFixed(0)} KiB; server RSS baseline ${(baseline / MiB).toFixed(1)} MiB, peak ${(peak / MiB).toFixed(1)} MiB over 7.5 s`)
    assert.ok(read < 4 * MiB, `the client read ${read} bytes: it is not slow`)
    // 64 MiB buffered would show; the first request's code and buffers,
    // socket buffers and GC noise stay well under 24 MiB.
    assert.ok(peak - baseline < 24 * MiB, `RSS grew by ${((peak - baseline) / MiB).toFixed(1)} MiB`)
  })
}
