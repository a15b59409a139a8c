import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { request } from 'undici'
import { startStaticOrigin } from '../helpers/static-origin.ts'
import { meteredBytes, startTestServer } from '../helpers/test-server.ts'
import type { TestServer } from '../helpers/test-server.ts'

// Playlists are read whole before they are rewritten: past the first socket
// read or file chunk (64 KiB) on both origins, and refused past PLAYLIST_MAX_BYTES (1 MiB).

const SEGMENTS = 6000
const dir = mkdtempSync(join(tmpdir(), 'sm-big-playlist-'))
const lines = ['#EXTM3U', '#EXT-X-TARGETDURATION:2']
for (let i = 0; i < SEGMENTS; i++) lines.push('#EXTINF:2.0,', `seg-${String(i).padStart(6, '0')}.ts`)
const big = Buffer.from(lines.join('\n') + '\n')
writeFileSync(join(dir, 'big.m3u8'), big)
writeFileSync(join(dir, 'huge.m3u8'), Buffer.concat([Buffer.from('#EXTM3U\n'), Buffer.alloc(1024 * 1024, '#\n')]))
after(() => rmSync(dir, { recursive: true, force: true }))

for (const kind of ['filesystem', 'http'] as const) {
  describe(`large playlists from the ${kind} origin`, () => {
    let server: TestServer
    let originClose: (() => Promise<void>) | undefined
    before(async () => {
      if (kind === 'http') {
        const origin = await startStaticOrigin(dir)
        originClose = origin.close
        server = await startTestServer({ originUrl: origin.url })
      } else {
        server = await startTestServer({ root: dir })
      }
    })
    after(async () => {
      await server.close()
      await originClose?.()
    })

    it(`a ${Math.round(big.length / 1024)} KiB playlist is rewritten whole, its length and metering exact`, async () => {
      assert.ok(big.length > 64 * 1024)
      const res = await request(`${server.url}/big.m3u8?uid=u-big`)
      const body = Buffer.from(await res.body.arrayBuffer())
      assert.equal(res.statusCode, 200)
      assert.equal(res.headers['content-length'], String(body.length))
      const text = body.toString('utf8')
      assert.equal(text.split('\n').filter((l) => /^seg-\d{6}\.ts\?uid=u-big$/.test(l)).length, SEGMENTS)
      assert.equal((await meteredBytes(server)).get('u-big'), body.length)
    })

    it('a playlist over 1 MiB is refused with a 502, and the server goes on serving', async () => {
      const res = await request(`${server.url}/huge.m3u8?uid=u-huge`)
      const answer = await res.body.json() as { error: { code: string, message: string } }
      assert.equal(res.statusCode, 502)
      assert.deepEqual(answer.error, { code: 'SM_ERR_PLAYLIST_TOO_LARGE', message: 'the origin playlist is larger than 1048576 bytes, the most that is rewritten' })
      assert.equal((await meteredBytes(server)).get('u-huge'), undefined)
      const again = await request(`${server.url}/big.m3u8?uid=u-after`)
      await again.body.arrayBuffer()
      assert.equal(again.statusCode, 200)
    })
  })
}
