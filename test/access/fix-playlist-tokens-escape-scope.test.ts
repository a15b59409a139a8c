import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { pino } from 'pino'
import { request } from 'undici'
import { signToken } from '../../src/server/access/url-signer.ts'
import { startTestServer } from '../helpers/test-server.ts'
import type { TestServer } from '../helpers/test-server.ts'

// A token for one playlist minted tokens for every path it named: an
// uploaded ugc/mallory/index.m3u8 listing ../../private/premium.ts got a
// valid token for it. docs/limits.md#playlists: children are signed only under the
// directory of the playlist the platform signed, the scope travels down to
// child playlists, and a child outside it (../../other/…, another host, a
// Host header trick) is left as written and logged once per playlist.

const SECRET = 'scope-secret'
const root = mkdtempSync(join(tmpdir(), 'sm-scope-'))
for (const d of ['ugc/mallory', 'private', 't/720p', 't/audio', 'other']) mkdirSync(join(root, d), { recursive: true })
writeFileSync(join(root, 'private/premium.ts'), 'premium bytes')
writeFileSync(join(root, 'ugc/mallory/seg.ts'), 'mallory bytes')
writeFileSync(join(root, 't/audio/seg.ts'), 'audio bytes')
writeFileSync(join(root, 't/720p/seg1.ts'), 'video bytes')
writeFileSync(join(root, 'other/seg.ts'), 'other bytes')
writeFileSync(join(root, 'ugc/mallory/index.m3u8'), [
  '#EXTM3U',
  '#EXTINF:2,', 'seg.ts',
  '#EXTINF:2,', '../../private/premium.ts',
  '#EXTINF:2,', '/private/premium.ts',
  '#EXTINF:2,', 'http://evil.example/private/premium.ts', // the Host header trick: the request says Host: evil.example
  '#EXTINF:2,', 'http://media.example/private/premium.ts', // the proxy's own public host, outside the scope
  '#EXTINF:2,', 'http://media.example/ugc/mallory/seg.ts', // the proxy's own public host, inside it
  ''
].join('\n'))
writeFileSync(join(root, 't/master.m3u8'), [
  '#EXTM3U',
  '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="en",URI="audio/index.m3u8"',
  '#EXT-X-STREAM-INF:BANDWIDTH=1000000', '720p/index.m3u8',
  '#EXT-X-STREAM-INF:BANDWIDTH=500000', '../other/index.m3u8',
  ''
].join('\n'))
writeFileSync(join(root, 't/720p/index.m3u8'), [
  '#EXTM3U',
  '#EXTINF:2,', 'seg1.ts',
  '#EXTINF:2,', '../audio/seg.ts',
  '#EXTINF:2,', '../../other/seg.ts',
  ''
].join('\n'))
after(() => rmSync(root, { recursive: true, force: true }))

const expires = Math.floor(Date.now() / 1000) + 3600
const signed = (uid: string, path: string): string => `/${path}?uid=${uid}&expires=${expires}&token=${signToken(SECRET, uid, path, expires)}`

describe('tokens minted by rewriting stay inside the signed entry', () => {
  let server: TestServer
  const logs: Array<Record<string, unknown>> = []
  before(async () => {
    const logger = pino({ level: 'warn' }, { write: (line: string) => { logs.push(JSON.parse(line) as Record<string, unknown>) } })
    server = await startTestServer({ root, signingSecret: SECRET, publicHosts: ['media.example'], logger })
  })
  after(() => server.close())

  const get = async (target: string, headers: Record<string, string> = {}): Promise<{ status: number, text: string }> => {
    const res = await request(`${server.url}${target}`, { headers })
    return { status: res.statusCode, text: await res.body.text() }
  }

  it('a user\'s playlist naming ../../private/… gets no token for it, whatever the Host header says; logged once', async () => {
    for (let i = 0; i < 3; i++) {
      const { status, text } = await get(signed('mallory', 'ugc/mallory/index.m3u8'), { host: 'evil.example' })
      assert.equal(status, 200)
      const uris = text.split('\n').filter((l) => l !== '' && !l.startsWith('#'))
      assert.match(uris[0]!, /^seg\.ts\?uid=mallory&expires=\d+&token=[0-9a-f]{64}$/)
      // Outside the scope or on another host: exactly as written.
      assert.deepEqual(uris.slice(1, 5), ['../../private/premium.ts', '/private/premium.ts', 'http://evil.example/private/premium.ts', 'http://media.example/private/premium.ts'])
      assert.match(uris[5]!, /^http:\/\/media\.example\/ugc\/mallory\/seg\.ts\?uid=mallory&expires=\d+&token=[0-9a-f]{64}$/)
      assert.doesNotMatch(text, /premium\.ts\?/)
    }
    const warned = logs.filter((l) => l.playlist === '/ugc/mallory/index.m3u8')
    assert.equal(warned.length, 1, JSON.stringify(logs))
    assert.equal(warned[0]!.unsigned, 4)
    assert.equal(warned[0]!.example, '../../private/premium.ts')
    // The signed child works; the private file still needs a token of its own.
    const seg = (await get(signed('mallory', 'ugc/mallory/index.m3u8'))).text.split('\n')[2]!
    assert.equal((await get(`/ugc/mallory/${seg}`)).text, 'mallory bytes')
    assert.equal((await get(`/private/premium.ts?uid=mallory&expires=${expires}&token=${'0'.repeat(64)}`)).status, 403)
  })

  it('the scope travels down: a master signed for t/ lets its child t/720p/ sign ../audio/, never ../../other/', async () => {
    const master = await get(signed('viewer', 't/master.m3u8'))
    assert.equal(master.status, 200)
    const lines = master.text.split('\n')
    const audio = /URI="([^"]+)"/.exec(lines[1]!)![1]!
    assert.match(audio, /^audio\/index\.m3u8\?uid=viewer&expires=\d+&scope=\/t\/&token=[0-9a-f]{64}$/)
    const child = lines[3]!
    assert.match(child, /^720p\/index\.m3u8\?uid=viewer&expires=\d+&scope=\/t\/&token=[0-9a-f]{64}$/)
    assert.equal(lines[5], '../other/index.m3u8')

    const variant = await get(`/t/${child}`)
    assert.equal(variant.status, 200)
    const uris = variant.text.split('\n').filter((l) => l !== '' && !l.startsWith('#'))
    assert.match(uris[0]!, /^seg1\.ts\?uid=viewer&expires=\d+&token=[0-9a-f]{64}$/)
    assert.match(uris[1]!, /^\.\.\/audio\/seg\.ts\?uid=viewer&expires=\d+&token=[0-9a-f]{64}$/)
    assert.equal(uris[2], '../../other/seg.ts')
    assert.equal((await get(`/t/720p/${uris[0]!}`)).text, 'video bytes')
    assert.equal((await get(`/t/audio/${uris[1]!.slice('../audio/'.length)}`)).text, 'audio bytes')

    // The child's token is bound to its path and its scope: widening the
    // scope, or using it for another path, is refused.
    const widened = child.replace('scope=/t/', 'scope=/')
    assert.equal((await get(`/t/${widened}`)).status, 403)
    assert.equal((await get(`/other/seg.ts${child.slice(child.indexOf('?'))}`)).status, 403)
    assert.equal((await get(`/t/audio/seg.ts${child.slice(child.indexOf('?'))}`)).status, 403)
    // Signed by the platform for t/720p/ itself, the variant's scope is t/720p/.
    const direct = (await get(signed('viewer', 't/720p/index.m3u8'))).text.split('\n').filter((l) => l !== '' && !l.startsWith('#'))
    assert.equal(direct[1], '../audio/seg.ts')
  })
})

it('without PUBLIC_HOSTS, absolute URIs are left alone even when the Host header names them', async (t) => {
  writeFileSync(join(root, 'ugc/mallory/abs.m3u8'), '#EXTM3U\n#EXTINF:2,\nhttp://127.0.0.1/ugc/mallory/seg.ts\n')
  const server = await startTestServer({ root, signingSecret: SECRET })
  t.after(() => server.close())
  const res = await request(`${server.url}${signed('m', 'ugc/mallory/abs.m3u8')}`, { headers: { host: '127.0.0.1' } })
  assert.equal(await res.body.text(), '#EXTM3U\n#EXTINF:2,\nhttp://127.0.0.1/ugc/mallory/seg.ts\n')
})
