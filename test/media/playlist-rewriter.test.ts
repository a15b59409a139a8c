import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { posix } from 'node:path'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import HLS from 'hls-parser'
import { isPlaylistPath, rewritePlaylist, type RewriteContext } from '../../src/server/media/playlist-rewriter.ts'
import { signedQuery, verifyToken } from '../../src/server/access/url-signer.ts'

const MEDIA = new URL('../../examples/media/', import.meta.url).pathname
const FIXTURES = new URL('../fixtures/playlists/', import.meta.url).pathname
const SECRET = 'playlist-test-secret'
const EXPIRES = 4_102_444_800

/** A readable stand-in for the signed query: the token is the child path, percent-encoded. */
const fakeQuery = (childPath: string): string => `uid=u&expires=9&token=${encodeURIComponent(childPath)}`

function context (playlistPath: string, ownHosts: string[] = [], queryFor = fakeQuery): RewriteContext {
  return { playlistPath, ownHosts: new Set(ownHosts), queryFor }
}

function playlistsUnder (dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.m3u8') && statSync(posix.join(dir, name)).isFile())
    .sort()
}

/** Every `uri` hls-parser found, in document order (skipping the raw `source`). */
function urisOf (node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) {
    for (const item of node) urisOf(item, out)
  } else if (node !== null && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if (key === 'uri' && typeof value === 'string') out.push(value)
      else if (key !== 'source') urisOf(value, out)
    }
  }
  return out
}

describe('playlist rewriter: the real ffmpeg playlists in examples/media', () => {
  const files = playlistsUnder(MEDIA)

  it('are the demo the README describes: master + plain, AES-128 and fMP4 VOD variants of 8 s, < 2 MB', () => {
    assert.deepEqual(files, ['enc/index.m3u8', 'fmp4/index.m3u8', 'master.m3u8', 'plain/index.m3u8'])
    for (const file of files.filter((f) => f !== 'master.m3u8')) {
      const text = readFileSync(posix.join(MEDIA, file), 'utf8')
      assert.match(text, /^#EXT-X-PLAYLIST-TYPE:VOD$/m, file)
      assert.match(text, /^#EXT-X-ENDLIST$/m, file)
      const seconds = [...text.matchAll(/^#EXTINF:([0-9.]+),/gm)].reduce((sum, m) => sum + Number(m[1]), 0)
      assert.ok(seconds >= 8 && seconds <= 10, `${file}: ${seconds} s`)
    }
    assert.match(readFileSync(posix.join(MEDIA, 'enc/index.m3u8'), 'utf8'), /^#EXT-X-KEY:METHOD=AES-128,URI="enc\.key"/m)
    assert.equal(statSync(posix.join(MEDIA, 'enc/enc.key')).size, 16)
    assert.match(readFileSync(posix.join(MEDIA, 'fmp4/index.m3u8'), 'utf8'), /^#EXT-X-MAP:URI="init\.mp4"$/m)
    const total = readdirSync(MEDIA, { recursive: true, encoding: 'utf8' })
      .map((name) => statSync(posix.join(MEDIA, name))).filter((s) => s.isFile()).reduce((sum, s) => sum + s.size, 0)
    assert.ok(total < 2 * 1024 * 1024, `${total} bytes`)
  })

  for (const file of files) {
    it(`${file}: signs every URI for the file it resolves to and leaves every other byte alone`, () => {
      const input = readFileSync(posix.join(MEDIA, file), 'utf8')
      const ctx = context(file, ['proxy.example:8080'], (childPath) =>
        signedQuery({ secret: SECRET, uid: 'user 42', path: childPath, expires: EXPIRES, sid: 's-1' }))
      const output = rewritePlaylist(input, ctx)
      const inLines = input.split('\n')
      const outLines = output.split('\n')
      assert.equal(outLines.length, inLines.length)
      assert.ok(output.endsWith('\n'))

      let rewritten = 0
      let expected = 0
      for (const [i, line] of inLines.entries()) {
        const out = outLines[i]!
        const isUri = line !== '' && !line.startsWith('#')
        const attr = /URI="([^"]*)"/.exec(line)
        if (!isUri && attr === null) {
          assert.equal(out, line, `line ${i + 1} must pass unchanged`)
          continue
        }
        expected++
        const uri = isUri ? line : attr![1]!
        const written = isUri ? out : /URI="([^"]*)"/.exec(out)![1]!
        assert.ok(written.startsWith(`${uri}?`), `${written} keeps ${uri} as written`)
        if (!isUri) assert.equal(out, line.replace(`URI="${uri}"`, `URI="${written}"`))
        const params = new URLSearchParams(written.slice(uri.length + 1))
        assert.deepEqual([...params.keys()], ['uid', 'expires', 'token', 'sid'])
        assert.equal(params.get('uid'), 'user 42')
        assert.equal(params.get('expires'), String(EXPIRES))
        assert.equal(params.get('sid'), 's-1')
        const childPath = posix.join(posix.dirname(file), uri)
        assert.ok(existsSync(posix.join(MEDIA, childPath)), `${childPath} exists`)
        assert.equal(verifyToken(SECRET, 'user 42', childPath, EXPIRES, params.get('token')!), true, childPath)
        assert.equal(verifyToken(SECRET, 'user 42', `media/${childPath}`, EXPIRES, params.get('token')!), false)
        rewritten++
      }
      assert.equal(rewritten, expected)
      assert.ok(rewritten >= 3)

      // Still a playlist, with the same structure, for a real parser.
      const before = HLS.parse(input)
      const after = HLS.parse(output)
      assert.equal(after.isMasterPlaylist, before.isMasterPlaylist)
      const uris = urisOf(before)
      assert.deepEqual(urisOf(after).map((u) => u.slice(0, u.indexOf('?'))), uris)
      assert.equal(uris.length, rewritten + (file === 'enc/index.m3u8' ? 3 : 0) + (file === 'fmp4/index.m3u8' ? 3 : 0))
    })
  }
})

describe('playlist rewriter: hand-made playlists in test/fixtures/playlists', () => {
  function fixture (name: string): string {
    return readFileSync(posix.join(FIXTURES, name), 'utf8')
  }

  it('media: tag order, ../ (clamped at the root), own and foreign hosts, stale parameters, LL-HLS tags, fragments', () => {
    const input = fixture('tricky-media.m3u8')
    const output = rewritePlaylist(input, context('live/cam1/v0/index.m3u8', ['media.example.com', 'proxy.local:8080']))
    assert.equal(output, fixture('tricky-media.expected.m3u8'))
    assert.deepEqual(urisOf(HLS.parse(output)).length, urisOf(HLS.parse(input)).length)
  })

  it('master: CRLF and no final newline kept; MEDIA, I-FRAME, SESSION-KEY, SESSION-DATA attributes; commas inside quotes', () => {
    const input = fixture('tricky-master-crlf.m3u8')
    assert.ok(input.includes('\r\n') && !input.endsWith('\n'))
    const output = rewritePlaylist(input, context('vod/movie/master.m3u8', ['media.example.com']))
    assert.equal(output, fixture('tricky-master-crlf.expected.m3u8'))
    assert.equal(output.split('\r\n').length, input.split('\r\n').length)
    assert.equal(output.replaceAll('\r\n', '').includes('\n'), false)
    const parsed = HLS.parse(output)
    assert.ok(parsed.isMasterPlaylist)
    assert.equal(urisOf(parsed).length, urisOf(HLS.parse(input)).length)
  })

  it('keeps each line its own ending, even mixed, and the presence or absence of a final newline', () => {
    const lf = fixture('tricky-media.m3u8')
    const ctx = context('live/cam1/v0/index.m3u8', ['media.example.com', 'proxy.local:8080'])
    const expected = fixture('tricky-media.expected.m3u8')
    assert.equal(rewritePlaylist(lf.replaceAll('\n', '\r\n'), ctx), expected.replaceAll('\n', '\r\n'))
    assert.equal(rewritePlaylist(lf.slice(0, -1), ctx), expected.slice(0, -1))
    const mixed = '#EXTM3U\r\n#EXTINF:2,\na.ts\r\n#EXTINF:2,\r\nb.ts'
    assert.equal(rewritePlaylist(mixed, context('x/p.m3u8')),
      '#EXTM3U\r\n#EXTINF:2,\na.ts?uid=u&expires=9&token=x%2Fa.ts\r\n#EXTINF:2,\r\nb.ts?uid=u&expires=9&token=x%2Fb.ts')
    assert.equal(rewritePlaylist('', context('p.m3u8')), '')
    assert.equal(rewritePlaylist('\n\r\n', context('p.m3u8')), '\n\r\n')
  })
})

describe('playlist rewriter: single URIs', () => {
  const one = (uri: string, playlistPath = 'a/b/index.m3u8', own: string[] = ['proxy.example', 'proxy.example:8443']): string =>
    rewritePlaylist(`#EXTM3U\n${uri}\n`, context(playlistPath, own)).split('\n')[1]!

  it('resolves relative forms against the playlist, as a URL parser would', () => {
    assert.equal(one('s.ts'), 's.ts?uid=u&expires=9&token=a%2Fb%2Fs.ts')
    assert.equal(one('./s.ts'), './s.ts?uid=u&expires=9&token=a%2Fb%2Fs.ts')
    assert.equal(one('../s.ts'), '../s.ts?uid=u&expires=9&token=a%2Fs.ts')
    assert.equal(one('../../../../s.ts'), '../../../../s.ts?uid=u&expires=9&token=s.ts')
    assert.equal(one('/root/s.ts'), '/root/s.ts?uid=u&expires=9&token=root%2Fs.ts')
    assert.equal(one('c/%2e%2e/s.ts'), 'c/%2e%2e/s.ts?uid=u&expires=9&token=a%2Fb%2Fs.ts')
    assert.equal(one('s.ts', 'index.m3u8'), 's.ts?uid=u&expires=9&token=s.ts')
    assert.equal(one('s.ts', 'dir with space/ü/p.m3u8'), 's.ts?uid=u&expires=9&token=dir%20with%20space%2F%C3%BC%2Fs.ts')
    assert.equal(one('s%3F1.ts'), 's%3F1.ts?uid=u&expires=9&token=a%2Fb%2Fs%3F1.ts')
  })

  it('rewrites absolute URIs on own hosts only (default ports included), and never other schemes', () => {
    assert.equal(one('https://proxy.example/x/s.ts'), 'https://proxy.example/x/s.ts?uid=u&expires=9&token=x%2Fs.ts')
    assert.equal(one('HTTPS://Proxy.Example:443/x/s.ts'), 'HTTPS://Proxy.Example:443/x/s.ts?uid=u&expires=9&token=x%2Fs.ts')
    assert.equal(one('https://proxy.example:8443/x/s.ts'), 'https://proxy.example:8443/x/s.ts?uid=u&expires=9&token=x%2Fs.ts')
    assert.equal(one('http://proxy.example:8080/x/s.ts', undefined, ['proxy.example:8080']), 'http://proxy.example:8080/x/s.ts?uid=u&expires=9&token=x%2Fs.ts')
    assert.equal(one('http://proxy.example/x/s.ts', undefined, ['proxy.example:80']), 'http://proxy.example/x/s.ts?uid=u&expires=9&token=x%2Fs.ts')
    assert.equal(one('http://[::1]:8080/s.ts', undefined, ['[::1]:8080']), 'http://[::1]:8080/s.ts?uid=u&expires=9&token=s.ts')
    for (const untouched of ['https://proxy.example:9999/x/s.ts', 'https://cdn.example/s.ts', '//cdn.example/s.ts',
      'http://proxy.invalid/s.ts', 'ftp://proxy.example/s.ts', 'data:video/mp2t;base64,R0dH', 'skd://key', 'blob:https://proxy.example/1']) {
      assert.equal(one(untouched), untouched)
    }
  })

  it('keeps an existing query and fragment, drops stale uid/expires/token/sid however spelled', () => {
    assert.equal(one('s.ts?x=1'), 's.ts?x=1&uid=u&expires=9&token=a%2Fb%2Fs.ts')
    assert.equal(one('s.ts?'), 's.ts?uid=u&expires=9&token=a%2Fb%2Fs.ts')
    assert.equal(one('s.ts?uid=old&x=1&token=t&expires=1&sid=z&y'), 's.ts?x=1&y&uid=u&expires=9&token=a%2Fb%2Fs.ts')
    assert.equal(one('s.ts?%75id=old&token&x=%ZZ&&uidx=1'), 's.ts?x=%ZZ&uidx=1&uid=u&expires=9&token=a%2Fb%2Fs.ts')
    assert.equal(one('s.ts#t=10'), 's.ts?uid=u&expires=9&token=a%2Fb%2Fs.ts#t=10')
    assert.equal(one('s.ts?a=1#f?uid=2'), 's.ts?a=1&uid=u&expires=9&token=a%2Fb%2Fs.ts#f?uid=2')
  })

  it('leaves blank lines, comments, whitespace around a URI and malformed URIs as they are', () => {
    assert.equal(one('  s.ts\t'), '  s.ts?uid=u&expires=9&token=a%2Fb%2Fs.ts\t')
    assert.equal(one('bad%zz.ts'), 'bad%zz.ts')
    assert.equal(one('http://[bad/s.ts', undefined, ['[bad']), 'http://[bad/s.ts')
    assert.equal(one('#comment URI="x.ts"'), '#comment URI="x.ts"')
    assert.equal(one('#EXT-X-UNKNOWN:FOO="a",URI="x.ts"'), '#EXT-X-UNKNOWN:FOO="a",URI="x.ts?uid=u&expires=9&token=a%2Fb%2Fx.ts"')
    assert.equal(one('#EXT-X-KEY:METHOD=AES-128,URI="k.key'), '#EXT-X-KEY:METHOD=AES-128,URI="k.key')
    assert.equal(one('#EXT-X-KEY:METHOD=AES-128,URI=""'), '#EXT-X-KEY:METHOD=AES-128,URI=""')
    assert.equal(one('#EXT-X-KEY:URI=k.key'), '#EXT-X-KEY:URI=k.key')
    assert.equal(one('#EXT-X-FOO:bar URI="x.ts"'), '#EXT-X-FOO:bar URI="x.ts"')
    assert.equal(one('#EXTINF:10,URI="x.ts"'), '#EXTINF:10,URI="x.ts"')
    assert.equal(rewritePlaylist('\uFEFF#EXTM3U\ns.ts', context('p.m3u8')), '\uFEFF#EXTM3U\ns.ts?uid=u&expires=9&token=s.ts')
  })

  it('calls queryFor once per rewritten URI, and appends nothing when it answers ""', () => {
    const seen: string[] = []
    const out = rewritePlaylist('#EXT-X-MAP:URI="i.mp4"\ns.ts?uid=old\nhttps://cdn.example/x.ts\n', {
      playlistPath: 'v/p.m3u8',
      ownHosts: new Set(),
      queryFor: (p) => { seen.push(p); return '' }
    })
    assert.deepEqual(seen, ['v/i.mp4', 'v/s.ts'])
    assert.equal(out, '#EXT-X-MAP:URI="i.mp4"\ns.ts\nhttps://cdn.example/x.ts\n')
  })
})

describe('playlist rewriter: properties', () => {
  const line = fc.oneof(
    fc.constantFrom('#EXTM3U', '#EXTINF:2.0,', '#EXT-X-KEY:METHOD=AES-128,URI="k.key?uid=1"', '#EXT-X-MAP:URI="../i.mp4"',
      '#EXT-X-PART:DURATION=1,URI="p,1.m4s#x"', '# comment', '', 's.ts', '/abs/s.ts?token=z', 'https://own.example/s.ts',
      'https://other.example/s.ts', 'seg.ts?a=1&&b#c', 'data:x', 'a%zz', '#EXT-X-BYTERANGE:10@0'),
    fc.string().filter((s) => !s.includes('\n') && !s.includes('\r'))
  )
  const playlist = fc.tuple(fc.array(fc.tuple(line, fc.boolean())), fc.boolean())
    .map(([lines, finalNewline]) => {
      const text = lines.map(([l, crlf]) => l + (crlf ? '\r\n' : '\n')).join('')
      return finalNewline || text === '' ? text : text.slice(0, text.endsWith('\r\n') ? -2 : -1)
    })

  it('keeps the line structure: same lines, same endings, tags without URI attributes unchanged', () => {
    fc.assert(fc.property(playlist, (body) => {
      const out = rewritePlaylist(body, context('d/p.m3u8', ['own.example']))
      const a = body.split('\n')
      const b = out.split('\n')
      assert.equal(b.length, a.length)
      for (const [i, l] of a.entries()) {
        assert.equal(b[i]!.endsWith('\r'), l.endsWith('\r'))
        if (l.trimStart().startsWith('#') && !l.includes('URI="')) assert.equal(b[i], l)
      }
    }))
  })

  it('re-signing a rewritten playlist equals signing the original (stale parameters never pile up)', () => {
    const first = context('d/p.m3u8', ['own.example'], (p) => `uid=a&expires=1&token=t${p.length}&sid=s`)
    const second = context('d/p.m3u8', ['own.example'])
    fc.assert(fc.property(playlist, (body) => {
      assert.equal(rewritePlaylist(rewritePlaylist(body, first), second), rewritePlaylist(body, second))
    }))
  })
})

describe('playlist rewriter: isPlaylistPath', () => {
  it('is true for .m3u8 in any case, and only for it', () => {
    for (const p of ['index.m3u8', 'a/b/INDEX.M3U8', 'x.M3u8', '.m3u8']) assert.equal(isPlaylistPath(p), true, p)
    for (const p of ['index.m3u', 'seg.ts', 'm3u8', 'a.m3u8/seg.ts', 'a.m3u8.bak', 'a.m3u8?x', '']) assert.equal(isPlaylistPath(p), false, p)
  })
})
