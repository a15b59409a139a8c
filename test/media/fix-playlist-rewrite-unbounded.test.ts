import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { request } from 'undici'
import { startStaticOrigin } from '../helpers/static-origin.ts'
import { meteredBytes, startTestServer } from '../helpers/test-server.ts'
import type { TestServer } from '../helpers/test-server.ts'

// A 7 MB playlist became a 40 MB response (RSS 90 → 548 MB): up to 8 MiB of
// origin playlist was rewritten. docs/limits.md#playlists: at most PLAYLIST_MAX_BYTES
// (default 1 MiB), larger is a 502 with its own code on both origins, and a
// HEAD computes the rewritten length without building the body.

const dir = mkdtempSync(join(tmpdir(), 'sm-playlist-bound-'))
const playlist = (segments: number): string => {
  const lines = ['#EXTM3U', '#EXT-X-TARGETDURATION:2']
  for (let i = 0; i < segments; i++) lines.push('#EXTINF:2,', `s${i}.ts`)
  return lines.join('\n') + '\n'
}
writeFileSync(join(dir, 'small.m3u8'), playlist(50)) // under 1000 bytes: a Buffer body on the filesystem origin
writeFileSync(join(dir, 'medium.m3u8'), playlist(200)) // over 1000 bytes, under 64 KiB
writeFileSync(join(dir, 'large.m3u8'), playlist(10_000)) // over 64 KiB: read whole on both origins
after(() => rmSync(dir, { recursive: true, force: true }))

for (const kind of ['filesystem', 'http'] as const) {
  describe(`PLAYLIST_MAX_BYTES on the ${kind} origin`, () => {
    let small: TestServer
    let large: TestServer
    let originClose: (() => Promise<void>) | undefined
    before(async () => {
      const origin = kind === 'http' ? await startStaticOrigin(dir) : undefined
      originClose = origin?.close
      const where = origin !== undefined ? { originUrl: origin.url } : { root: dir }
      small = await startTestServer({ ...where, playlistMaxBytes: 1000, adminToken: 'tok' })
      large = await startTestServer({ ...where, playlistMaxBytes: 100 * 1024 })
    })
    after(async () => {
      await small.close()
      await large.close()
      await originClose?.()
    })

    it('a playlist over the limit is a JSON 502 SM_ERR_PLAYLIST_TOO_LARGE, GET and HEAD, metered 0, counted', async () => {
      for (const [server, file] of [[small, 'medium.m3u8'], [large, 'large.m3u8']] as const) {
        const res = await request(`${server.url}/${file}?uid=big`)
        assert.equal(res.statusCode, 502, file)
        const { error } = await res.body.json() as { error: { code: string, message: string } }
        assert.equal(error.code, 'SM_ERR_PLAYLIST_TOO_LARGE')
        assert.match(error.message, /larger than \d+ bytes/)
        const head = await request(`${server.url}/${file}?uid=big`, { method: 'HEAD' })
        await head.body.dump()
        assert.equal(head.statusCode, 502)
        assert.equal((await meteredBytes(server)).get('big'), undefined)
      }
      const metrics = await (await request(`${small.url}/metrics`, { headers: { authorization: 'Bearer tok' } })).body.text()
      assert.match(metrics, /^streammeter_limit_hits_total\{limit="playlist_max_bytes"\} 2$/m)
    })

    it('under the limit: rewritten; HEAD gives the very length GET sends, and no body', async () => {
      for (const [server, file] of [[small, 'small.m3u8'], [large, 'medium.m3u8']] as const) {
        const get = await request(`${server.url}/${file}?uid=ok&sid=s1`)
        const body = Buffer.from(await get.body.arrayBuffer())
        assert.equal(get.statusCode, 200)
        assert.match(body.toString(), /\ns1\.ts\?uid=ok&sid=s1\n/)
        const head = await request(`${server.url}/${file}?uid=ok&sid=s1`, { method: 'HEAD' })
        assert.equal((await head.body.arrayBuffer()).byteLength, 0)
        assert.equal(head.statusCode, 200)
        assert.equal(head.headers['content-length'], String(body.length))
        assert.equal(get.headers['content-length'], String(body.length))
      }
    })
  })
}
