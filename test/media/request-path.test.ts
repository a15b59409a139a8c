import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { BadRequestError, NotFoundError } from '../../src/errors.ts'
import { MAX_PATH_BYTES, parseMediaPath, splitTarget } from '../../src/server/media/request-path.ts'

describe('parseMediaPath', () => {
  const accepted: Array<[string, string]> = [
    ['/a.m3u8', 'a.m3u8'],
    ['/live/stream_1/seg-00042.ts', 'live/stream_1/seg-00042.ts'],
    ['/vid%C3%A9o/a.ts', 'vidéo/a.ts'],
    ['/vid\u00c3\u00a9o.ts', 'vidéo.ts'], // raw UTF-8 bytes, as Node's latin1 req.url shows them
    ['/a%20b.ts', 'a b.ts'],
    ['/a+b.ts', 'a+b.ts'],
    ['/%41%62c', 'Abc'],
    ['/a/b.c.d.ts', 'a/b.c.d.ts'],
    ['/a/x..y/z.', 'a/x..y/z.'],
    ['/%E2%82%AC', '€'],
    ['/' + 'a'.repeat(MAX_PATH_BYTES), 'a'.repeat(MAX_PATH_BYTES)]
  ]
  for (const [raw, decoded] of accepted) {
    it(`accepts ${JSON.stringify(raw.slice(0, 40))}`, () => {
      assert.equal(parseMediaPath(raw), decoded)
    })
  }

  const refused: Array<[string, string]> = [
    ['no leading slash', 'a.ts'],
    ['empty path', '/'],
    ['..', '/../etc/passwd'],
    ['.. inside', '/a/../b'],
    ['.', '/a/./b'],
    ['%2e%2e', '/%2e%2e/etc/passwd'],
    ['%2E%2E', '/a/%2E%2E/b'],
    ['.%2e', '/a/.%2e/b'],
    ['%2e', '/a/%2e/b'],
    ['%2f', '/a%2fb'],
    ['%2F', '/..%2F..%2Fetc'],
    ['%5c', '/a%5cb'],
    ['%5C', '/..%5C..%5Cwin.ini'],
    ['raw backslash', '/a\\b'],
    ['%00', '/a.ts%00.m3u8'],
    ['raw NUL', '/a\u0000b'],
    ['a//b', '/a//b'],
    ['trailing slash', '/a/'],
    ['%zz', '/a%zzb'],
    ['truncated %', '/a%2'],
    ['lone %', '/a%'],
    ['invalid UTF-8', '/a%C3'],
    ['overlong UTF-8 slash', '/a%C0%AFb'],
    ['control char %0a', '/a%0ab'],
    ['control char %1b', '/a%1b[31m'],
    ['DEL', '/a%7f'],
    ['C1 control', '/a%C2%85'],
    ['raw #', '/a#b'],
    ['char above U+00FF', '/a\u20acb'],
    ['too long', '/' + 'a'.repeat(MAX_PATH_BYTES + 1)],
    ['too long once decoded', '/' + '%C3%A9'.repeat(MAX_PATH_BYTES / 2 + 1)],
    ['huge', '/' + 'a'.repeat(100_000)]
  ]
  for (const [what, raw] of refused) {
    it(`refuses ${what}`, () => {
      assert.throws(() => parseMediaPath(raw), (err: unknown) => {
        assert.ok(err instanceof BadRequestError)
        assert.equal(err.statusCode, 400)
        assert.equal(err.code, 'SM_ERR_BAD_REQUEST')
        assert.ok(!err.message.includes(raw.slice(1, 20)) || raw.length < 4, 'the message must not echo the path')
        return true
      })
    })
  }
})

describe('parseMediaPath: dotfiles', () => {
  for (const raw of ['/.env', '/.git/config', '/a/.hidden/b.ts', '/a/.htpasswd', '/%2eenv', '/a/%2Essh/id_rsa', '/...', '/a/..x']) {
    it(`answers 404 for ${raw}`, () => {
      assert.throws(() => parseMediaPath(raw), (err: unknown) => err instanceof NotFoundError && err.statusCode === 404)
    })
  }
})

describe('splitTarget', () => {
  const cases: Array<[string, string, string]> = [
    ['/a.m3u8', '/a.m3u8', ''],
    ['/a.m3u8?uid=u&token=t', '/a.m3u8', 'uid=u&token=t'],
    ['/a?b?c', '/a', 'b?c'],
    ['/a?', '/a', ''],
    ['http://proxy.example:8080/v/a.ts?uid=u', '/v/a.ts', 'uid=u'],
    ['https://proxy.example', '/', ''],
    ['HTTP://h?x=1', '/', 'x=1'],
    ['*', '*', '']
  ]
  for (const [url, rawPath, rawQuery] of cases) {
    it(`splits ${url}`, () => {
      assert.deepEqual(splitTarget(url), { rawPath, rawQuery })
    })
  }
})
