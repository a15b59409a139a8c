import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { request } from 'undici'
import { deadOriginUrl, startStalledOrigin, startStaticOrigin } from '../helpers/static-origin.ts'
import { meteredBytes, startTestServer } from '../helpers/test-server.ts'
import type { TestServer, TestServerOptions } from '../helpers/test-server.ts'

const dir = mkdtempSync(join(tmpdir(), 'sm-media-'))
const segment = randomBytes(1024 * 1024 + 123)
const movie = randomBytes(3 * 1024 * 1024)
const playlist = '#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\na.ts\n#EXT-X-ENDLIST\n'
mkdirSync(join(dir, 'video'))
writeFileSync(join(dir, 'video', 'a.ts'), segment)
writeFileSync(join(dir, 'video', 'index.m3u8'), playlist)
writeFileSync(join(dir, 'movie.mp4'), movie)
after(() => rmSync(dir, { recursive: true, force: true }))

async function get (url: string, headers: Record<string, string> = {}, method: 'GET' | 'HEAD' = 'GET') {
  const res = await request(url, { method, headers })
  const body = Buffer.from(await res.body.arrayBuffer())
  return { status: res.statusCode, headers: res.headers, body }
}

for (const kind of ['filesystem', 'http'] as const) {
  describe(`media from the ${kind} origin`, () => {
    let server: TestServer
    let originClose: (() => Promise<void>) | undefined
    before(async () => {
      const opts: TestServerOptions = {}
      if (kind === 'http') {
        const origin = await startStaticOrigin(dir)
        originClose = origin.close
        opts.originUrl = origin.url
      } else {
        opts.root = dir
      }
      server = await startTestServer(opts)
    })
    after(async () => {
      await server.close()
      await originClose?.()
    })

    it('GET streams the whole file with type, length, validators and cache headers', async () => {
      const r = await get(`${server.url}/video/a.ts?uid=full`)
      assert.equal(r.status, 200)
      assert.ok(r.body.equals(segment))
      assert.equal(r.headers['content-type'], 'video/mp2t')
      assert.equal(r.headers['content-length'], String(segment.length))
      assert.equal(r.headers['accept-ranges'], 'bytes')
      assert.ok(r.headers.etag)
      assert.ok(r.headers['last-modified'])
      assert.match(String(r.headers['cache-control']), /max-age=\d+/)
      assert.equal(r.headers['access-control-allow-origin'], '*')
      assert.match(String(r.headers['access-control-expose-headers']), /Content-Range/)
      const m = await get(`${server.url}/movie.mp4`)
      assert.equal(m.headers['content-type'], 'video/mp4')
      assert.ok(m.body.equals(movie))
    })

    it('HEAD gives the headers and no body', async () => {
      const r = await get(`${server.url}/movie.mp4?uid=head`, {}, 'HEAD')
      assert.equal(r.status, 200)
      assert.equal(r.headers['content-length'], String(movie.length))
      assert.equal(r.body.length, 0)
    })

    it('single ranges give 206 with an exact Content-Range; unsatisfiable gives 416', async () => {
      let r = await get(`${server.url}/movie.mp4?uid=range`, { range: 'bytes=100-199' })
      assert.equal(r.status, 206)
      assert.equal(r.headers['content-range'], `bytes 100-199/${movie.length}`)
      assert.ok(r.body.equals(movie.subarray(100, 200)))
      r = await get(`${server.url}/movie.mp4?uid=range`, { range: 'bytes=-1000' })
      assert.equal(r.status, 206)
      assert.equal(r.headers['content-range'], `bytes ${movie.length - 1000}-${movie.length - 1}/${movie.length}`)
      assert.ok(r.body.equals(movie.subarray(movie.length - 1000)))
      r = await get(`${server.url}/movie.mp4?uid=range`, { range: `bytes=${movie.length}-` })
      assert.equal(r.status, 416)
      assert.equal(r.headers['content-range'], `bytes */${movie.length}`)
      assert.equal(JSON.parse(r.body.toString()).error.code, 'SM_ERR_RANGE_NOT_SATISFIABLE')
    })

    it('conditional requests give 304 with no body', async () => {
      const first = await get(`${server.url}/video/a.ts`)
      const r = await get(`${server.url}/video/a.ts?uid=cond`, { 'if-none-match': String(first.headers.etag) })
      assert.equal(r.status, 304)
      assert.equal(r.body.length, 0)
      const r2 = await get(`${server.url}/video/a.ts?uid=cond`, { 'if-modified-since': String(first.headers['last-modified']) })
      assert.equal(r2.status, 304)
    })

    it('playlists are served with the HLS type and no-cache, rewritten for a uid, whole whatever the Range', async () => {
      const r = await get(`${server.url}/video/index.m3u8?uid=pl`, { range: 'bytes=0-' })
      assert.equal(r.status, 200)
      assert.equal(r.headers['content-type'], 'application/vnd.apple.mpegurl')
      assert.match(String(r.headers['cache-control']), /no-cache/)
      assert.equal(r.headers['content-range'], undefined)
      const text = r.body.toString()
      assert.match(text, /^a\.ts\?uid=pl$/m)
      assert.equal(r.headers['content-length'], String(r.body.length))
    })

    it('HEAD of a rewritten playlist gives the rewritten length and no body', async () => {
      const full = await get(`${server.url}/video/index.m3u8?uid=pl-head`)
      const head = await get(`${server.url}/video/index.m3u8?uid=pl-head`, {}, 'HEAD')
      assert.equal(head.status, 200)
      assert.equal(head.headers['content-length'], String(full.body.length))
      assert.equal(head.body.length, 0)
    })

    it('missing files are a JSON 404', async () => {
      const r = await get(`${server.url}/video/nope.ts?uid=x`)
      assert.equal(r.status, 404)
      assert.equal(r.headers['content-type'], 'application/json; charset=utf-8')
      assert.deepEqual(Object.keys(JSON.parse(r.body.toString()).error).sort(), ['code', 'message'])
    })

    it('meters exactly the body bytes received: HEAD, 304 and errors count 0', async () => {
      const totals = await meteredBytes(server)
      assert.equal(totals.get('full'), segment.length)
      assert.equal(totals.get('range'), 100 + 1000)
      assert.equal(totals.get('head'), undefined)
      assert.equal(totals.get('cond'), undefined)
      assert.equal(totals.get('x'), undefined)
      assert.ok((totals.get('pl') ?? 0) > playlist.length)
    })
  })
}

describe('origin failures', () => {
  it('an unreachable origin is a JSON 502 without the origin\'s message', async (t) => {
    const server = await startTestServer({ originUrl: await deadOriginUrl() })
    t.after(() => server.close())
    const r = await get(`${server.url}/video/a.ts?uid=u`)
    assert.equal(r.status, 502)
    const body = JSON.parse(r.body.toString())
    assert.equal(body.error.code, 'SM_ERR_ORIGIN_UNREACHABLE')
    assert.doesNotMatch(r.body.toString(), /ECONNREFUSED|127\.0\.0\.1|stack/)
  })

  it('a stalled origin is a JSON 504', async (t) => {
    const stalled = await startStalledOrigin()
    const server = await startTestServer({ originUrl: stalled.url, originTimeout: 0.3 })
    t.after(async () => {
      await server.close()
      await stalled.close()
    })
    const started = Date.now()
    const r = await get(`${server.url}/video/a.ts?uid=u`)
    assert.equal(r.status, 504)
    assert.equal(JSON.parse(r.body.toString()).error.code, 'SM_ERR_ORIGIN_TIMEOUT')
    assert.ok(Date.now() - started < 3000)
  })
})
