import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { after, it } from 'node:test'
import type { TestContext } from 'node:test'
import { Agent, request } from 'undici'
import { rewritePlaylist, rewritePlaylistSliced } from '../../src/server/media/playlist-rewriter.ts'
import { startTestServer } from '../helpers/test-server.ts'

// A 7 MB playlist blocked the event loop for 2.2 s while it was rewritten:
// every other request waited. docs/limits.md#playlists: other requests are not held up
// while a large playlist is rewritten (it is rewritten in slices that yield).

const dir = mkdtempSync(join(tmpdir(), 'sm-playlist-fair-'))
const lines = ['#EXTM3U', '#EXT-X-TARGETDURATION:2']
for (let i = 0, size = 32; size < 1024 * 1024 - 64; i++) {
  const name = `seg${i}.ts`
  lines.push('#EXTINF:2,', name)
  size += 12 + name.length
}
const text = lines.join('\n') + '\n'
writeFileSync(join(dir, 'big.m3u8'), text)
writeFileSync(join(dir, 'small.ts'), Buffer.alloc(1000, 1))
after(() => rmSync(dir, { recursive: true, force: true }))

const ctx = { playlistPath: 'v/big.m3u8', ownHosts: new Set<string>(), queryFor: (p: string) => `uid=u&token=${p.length}` }

it('sliced rewriting gives the same bytes; the length alone without building the body', async () => {
  for (const sample of [text, 'a.ts', '\uFEFF#EXTM3U\r\n#EXTINF:2,é\r\nb é.ts\r\n\r\n', '#EXTM3U\nx.ts\n\n']) {
    const whole = await rewritePlaylistSliced(Buffer.from(sample), ctx, { sliceMs: 0 })
    assert.equal(whole.body?.toString(), rewritePlaylist(sample, ctx))
    assert.deepEqual(await rewritePlaylistSliced(Buffer.from(sample), ctx, { lengthOnly: true }), { length: whole.length, body: undefined })
  }
})

it('while 1 MiB playlists are rewritten, small requests keep answering: p99 < 100 ms', async (t) => {
  assert.ok(Buffer.byteLength(text) <= 1024 * 1024 && Buffer.byteLength(text) > 1000 * 1024)
  const server = await startTestServer({ root: dir })
  t.after(() => server.close())
  // Up to three measurements, the best counting: a rewrite that blocks the
  // event loop fails every one, while a neighbour taking the machine's two
  // cores for a moment (the suite runs two files at once) spoils one.
  const p99s: number[] = []
  for (let attempt = 0; attempt < 3 && !(p99s.length > 0 && Math.min(...p99s) < 100); attempt++) {
    p99s.push(await measure(t, server.url))
  }
  assert.ok(Math.min(...p99s) < 100, `p99 ${p99s.map((p) => p.toFixed(1)).join(', ')} ms`)
})

/** One measurement: four 1 MiB rewrites while two clients time small requests; their p99 in ms. */
async function measure (t: TestContext, url: string): Promise<number> {
  const agent = new Agent({ connections: 4 })
  const lag = monitorEventLoopDelay({ resolution: 5 })
  lag.enable()
  const state = { rewriting: true }
  let rewrites = 0
  const big = (async () => {
    try {
      // Four rewrites, one after the other, each of 1 MiB.
      for (let i = 0; i < 4; i++) {
        const res = await request(`${url}/big.m3u8?uid=big${i}`, { dispatcher: agent })
        assert.equal(res.statusCode, 200)
        await res.body.dump()
        rewrites++
      }
    } finally {
      state.rewriting = false
    }
  })()
  const latencies: number[] = []
  const small = async (): Promise<void> => {
    while (state.rewriting && latencies.length < 10_000) {
      const started = performance.now()
      const res = await request(`${url}/small.ts?uid=small`, { dispatcher: agent })
      await res.body.dump()
      assert.equal(res.statusCode, 200)
      latencies.push(performance.now() - started)
    }
  }
  try {
    await Promise.all([big, small(), small()])
  } finally {
    lag.disable()
    await agent.close()
  }
  latencies.sort((a, b) => a - b)
  const p99 = latencies[Math.ceil(latencies.length * 0.99) - 1] ?? Infinity
  t.diagnostic(`${rewrites} rewrites of ${(Buffer.byteLength(text) / 1024).toFixed(0)} KiB; ${latencies.length} small requests meanwhile: p50 ${latencies[latencies.length >> 1]?.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${latencies.at(-1)?.toFixed(1)} ms; event-loop delay p99 ${(lag.percentile(99) / 1e6).toFixed(1)} ms, max ${(lag.max / 1e6).toFixed(1)} ms`)
  assert.ok(latencies.length >= 20, `only ${latencies.length} small requests were answered during the rewrites`)
  return p99
}
