import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { request } from 'undici'
import { loadConfig } from '../../src/config/index.ts'
import { createLogger, startServer } from '../../src/server/index.ts'
import { rawGet } from '../helpers/raw-http.ts'
import { startRecordingOrigin } from '../helpers/recording-origin.ts'
import type { RecordingOrigin } from '../helpers/recording-origin.ts'

/**
 * What an HTTP origin hears, and what of its answer reaches the client
 * (docs/access.md#requests). The origin used to get neither the client's query (LL-HLS
 * `_HLS_msn`/`_HLS_part` blocking reloads never worked) nor
 * `X-Forwarded-For`/`-Proto`, and only a fixed list of its response
 * headers came back.
 */

const cwd = mkdtempSync(join(tmpdir(), 'sm-origin-fidelity-'))
after(() => rmSync(cwd, { recursive: true, force: true }))

const PLAYLIST = '#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nseg1.ts\n'
const SEGMENT = Buffer.alloc(500, 7)

/** A real origin: playlists and segments, with end-to-end, hop-by-hop and forbidden fields on every answer. */
async function origin (t: TestContext): Promise<RecordingOrigin> {
  const o = await startRecordingOrigin((req, res) => {
    const playlist = (req.url ?? '').split('?')[0]?.endsWith('.m3u8') === true
    const body = playlist ? Buffer.from(PLAYLIST) : SEGMENT
    res.writeHead(200, {
      'content-type': playlist ? 'application/vnd.apple.mpegurl' : 'video/mp2t',
      'content-length': String(body.length),
      'cache-control': 'public, max-age=600',
      'cdn-cache-control': 'max-age=3600',
      'set-cookie': ['origin-session=abc; Path=/', 'other=1'],
      'access-control-allow-origin': 'https://evil.example',
      'access-control-allow-credentials': 'true',
      link: '</next.ts>; rel=preload',
      'x-origin-trace': 'trace-1',
      'timing-allow-origin': '*',
      connection: 'keep-alive, x-hop',
      'x-hop': 'dropped',
      'keep-alive': 'timeout=5'
    })
    res.end(req.method === 'HEAD' ? undefined : body)
  })
  t.after(() => o.close())
  return o
}

/** The real server (config → startServer) in front of `o`, with `env` settings. */
async function proxy (t: TestContext, o: RecordingOrigin, env: Record<string, string> = {}): Promise<string> {
  const { config } = loadConfig({ env: { HOST: '127.0.0.1', PORT: '0', STORE_URL: 'memory:', ORIGIN_URL: `${o.url}/media/`, ...env }, cwd })
  const server = await startServer(config, { logger: createLogger('silent') })
  t.after(() => server.close())
  return server.address
}

async function fetchOk (url: string, headers: Record<string, string> = {}): Promise<Record<string, string | string[] | undefined>> {
  const res = await request(url, { headers })
  assert.equal(res.statusCode, 200)
  await res.body.dump()
  return res.headers
}

describe('to the origin', () => {
  it('the query string less uid, expires, token, sid, scope and ip: LL-HLS parameters reach it', async (t) => {
    const o = await origin(t)
    const base = await proxy(t, o)
    await fetchOk(`${base}/live/index.m3u8?_HLS_msn=5&_HLS_part=2&uid=alice&sid=s1`)
    await fetchOk(`${base}/live/seg1.ts?uid=alice&expires=1&token=abc&scope=%2Flive%2F&ip=10.0.0.0%2F8&foo=b%20r&%74oken=x&sid=s&&_HLS_skip=YES`)
    await fetchOk(`${base}/live/seg1.ts`)
    await fetchOk(`${base}/live/seg1.ts?uid=alice`)
    assert.deepEqual(o.received.map((r) => r.url), [
      '/media/live/index.m3u8?_HLS_msn=5&_HLS_part=2',
      '/media/live/seg1.ts?foo=b%20r&_HLS_skip=YES',
      '/media/live/seg1.ts',
      '/media/live/seg1.ts'
    ])
  })

  it('User-Agent, X-Forwarded-For of the peer alone and X-Forwarded-Proto http from an untrusted peer; its own Host', async (t) => {
    const o = await origin(t)
    const base = await proxy(t, o)
    await fetchOk(`${base}/a.ts`, { 'user-agent': 'AppleCoreMedia/1.0', 'x-forwarded-for': '6.6.6.6', 'x-forwarded-proto': 'https' })
    const h = o.received[0]?.headers ?? {}
    assert.equal(h['user-agent'], 'AppleCoreMedia/1.0')
    assert.equal(h['x-forwarded-for'], '127.0.0.1')
    assert.equal(h['x-forwarded-proto'], 'http')
    assert.equal(h.host, `127.0.0.1:${o.port}`)
  })

  it('from a trusted proxy: its chain plus the peer, and the scheme it said', async (t) => {
    const o = await origin(t)
    const base = await proxy(t, o, { TRUSTED_PROXIES: '127.0.0.1' })
    await fetchOk(`${base}/a.ts`, { 'x-forwarded-for': '203.0.113.7, 10.0.0.2', 'x-forwarded-proto': 'HTTPS' })
    await fetchOk(`${base}/a.ts`)
    assert.equal(o.received[0]?.headers['x-forwarded-for'], '203.0.113.7, 10.0.0.2, 127.0.0.1')
    assert.equal(o.received[0]?.headers['x-forwarded-proto'], 'https')
    assert.equal(o.received[1]?.headers['x-forwarded-for'], '127.0.0.1')
    assert.equal(o.received[1]?.headers['x-forwarded-proto'], 'http')
  })

  it('ORIGIN_HOST_HEADER replaces the Host', async (t) => {
    const o = await origin(t)
    const base = await proxy(t, o, { ORIGIN_HOST_HEADER: 'media.example.com' })
    // A Host trick by the client changes nothing.
    const answer = await rawGet(Number(new URL(base).port), '/a.ts')
    assert.equal(answer.status, 200)
    assert.equal(o.received[0]?.headers.host, 'media.example.com')
  })
})

describe('from the origin', () => {
  it('every end-to-end header; not hop-by-hop, Connection-named, Set-Cookie, CORS or caching fields', async (t) => {
    const o = await origin(t)
    const base = await proxy(t, o)
    const h = await fetchOk(`${base}/a.ts`, { origin: 'https://player.example' })
    assert.equal(h.link, '</next.ts>; rel=preload')
    assert.equal(h['x-origin-trace'], 'trace-1')
    assert.equal(h['timing-allow-origin'], '*')
    assert.equal(h['content-type'], 'video/mp2t')
    assert.equal(h['content-length'], String(SEGMENT.length))
    assert.equal(h['set-cookie'], undefined)
    assert.equal(h['x-hop'], undefined)
    assert.notEqual(h['keep-alive'], 'timeout=5') // the proxy's own connection may have one
    assert.equal(h['cdn-cache-control'], undefined)
    // Ours, not the origin's: private, so that no shared cache serves it unmetered.
    assert.equal(h['cache-control'], 'private, max-age=86400')
    assert.equal(h['access-control-allow-origin'], '*')
    assert.equal(h['access-control-allow-credentials'], undefined)
  })

  it('a rewritten playlist: the origin\'s other headers, our Cache-Control and Content-Length', async (t) => {
    const o = await origin(t)
    const base = await proxy(t, o)
    const res = await request(`${base}/live/index.m3u8?uid=alice`)
    const text = await res.body.text()
    assert.equal(res.statusCode, 200)
    assert.match(text, /^seg1\.ts\?uid=alice$/m)
    assert.equal(res.headers['content-length'], String(Buffer.byteLength(text)))
    assert.equal(res.headers['cache-control'], 'private, no-cache')
    assert.equal(res.headers['x-origin-trace'], 'trace-1')
    assert.equal(res.headers['set-cookie'], undefined)
  })
})
