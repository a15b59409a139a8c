import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { it } from 'node:test'
import { rssOf, startCliServer } from './helpers/cli-server.ts'

const MiB = 1024 * 1024

it('a slow client reading 64 KiB/s from a 64 MiB file: the server\'s RSS stays flat', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sm-rss-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'big.mp4'), Buffer.alloc(64 * MiB, 5))
  const server = await startCliServer({ ORIGIN_ROOT: dir, STORE_URL: 'memory:' })
  t.after(async () => {
    server.child.kill('SIGKILL')
    await server.exited
  })
  const port = Number(new URL(server.url).port)
  const pid = server.child.pid as number

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

  await new Promise((resolve) => setTimeout(resolve, 1500))
  const baseline = await rssOf(pid)
  const samples: number[] = []
  for (let i = 0; i < 12; i++) {
    await new Promise((resolve) => setTimeout(resolve, 500))
    samples.push(await rssOf(pid))
  }
  const peak = Math.max(...samples)
  t.diagnostic(`client read ${(read / 1024).toFixed(0)} KiB; server RSS baseline ${(baseline / MiB).toFixed(1)} MiB, peak ${(peak / MiB).toFixed(1)} MiB over 6 s`)
  assert.ok(read < 4 * MiB, `the client read ${read} bytes: it is not slow`)
  // 64 MiB buffered would show; socket buffers and GC noise stay well under 16 MiB.
  assert.ok(peak - baseline < 16 * MiB, `RSS grew by ${((peak - baseline) / MiB).toFixed(1)} MiB`)
})
