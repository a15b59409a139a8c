import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import {
  NotFoundError, OriginUnreachableError, RangeNotSatisfiableError, ShuttingDownError
} from '../../src/errors.ts'
import { FsOrigin } from '../../src/server/origin/fs-origin.ts'
import type { FsOriginOptions } from '../../src/server/origin/fs-origin.ts'
import { FileBody } from '../../src/server/origin/file-body.ts'
import type { ForwardedHeaders, OriginRequest, OriginResponse, PushedBody } from '../../src/server/origin/origin.ts'
import { bodyOf, rejectsWith } from '../helpers/origin-assert.ts'
import { waitFor } from '../helpers/wait.ts'

const SIZE = 1000
const content = Buffer.from(Array.from({ length: SIZE }, (_, i) => (i * 7 + 3) & 0xff))
// A fixed past mtime: Last-Modified is then a strong validator (RFC 9110 §8.8.2.2).
const MTIME = new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 678))

let base: string
let root: string
let origin: FsOrigin

before(() => {
  base = mkdtempSync(join(tmpdir(), 'sm-fs-origin-'))
  root = join(base, 'root')
  mkdirSync(join(root, 'v'), { recursive: true })
  mkdirSync(join(root, 'dir'))
  writeFileSync(join(root, 'v', 'seg.ts'), content)
  utimesSync(join(root, 'v', 'seg.ts'), MTIME, MTIME)
  writeFileSync(join(root, 'a.m3u8'), '#EXTM3U\n')
  writeFileSync(join(root, 'enc.key'), Buffer.alloc(16, 1))
  writeFileSync(join(root, 'empty.ts'), '')
  writeFileSync(join(base, 'secret.txt'), 'outside the root')
  symlinkSync('../secret.txt', join(root, 'escape.txt'))
  symlinkSync(base, join(root, 'up'))
  symlinkSync('v/seg.ts', join(root, 'inside-link.ts'))
  symlinkSync('v', join(root, 'vlink'))
  symlinkSync('missing.ts', join(root, 'dangling.ts'))
  execFileSync('mkfifo', [join(root, 'fifo.ts')])
  symlinkSync(root, join(base, 'root-link'))
  origin = new FsOrigin(root)
})

after(async () => {
  await origin.close()
  rmSync(base, { recursive: true, force: true })
})

// The suites about what is answered run twice: with small bodies read whole
// into a Buffer (the default) and with every body streamed (as files larger
// than `bufferMax` are), so that both ways of reading agree byte for byte.
const MODES: Array<[string, FsOriginOptions]> = [['buffered', {}], ['streamed', { bufferMax: 0 }]]

function get (path: string, headers: ForwardedHeaders = {}, extra: Partial<OriginRequest> = {}): Promise<OriginResponse> {
  return origin.fetch({ path, method: 'GET', headers, ...extra })
}

for (const [mode, options] of MODES) {
  describe(`FsOrigin, ${mode} bodies`, () => {
    let shared: FsOrigin
    before(() => {
      shared = origin
      origin = new FsOrigin(root, options)
    })
    after(async () => {
      await origin.close()
      origin = shared
    })
    suites()
  })
}

function suites (): void {
  describe('FsOrigin: full responses', () => {
    it('GET streams the whole file with validators and metadata', async (t) => {
      const answer = await get('v/seg.ts')
      t.after(() => { answer.body?.destroy() })
      assert.equal(answer.status, 200)
      assert.equal(answer.length, SIZE)
      assert.deepEqual(answer.headers, {
        'content-type': 'video/mp2t',
        'content-length': '1000',
        'accept-ranges': 'bytes',
        etag: `"${SIZE.toString(16)}-${(statSync(join(root, 'v', 'seg.ts'), { bigint: true }).mtimeNs / 1_000_000n).toString(16)}"`,
        'last-modified': 'Tue, 02 Jan 2024 03:04:05 GMT',
        'cache-control': 'private, max-age=86400'
      })
      assert.deepEqual(await bodyOf(answer), content)
    })

    it('HEAD answers the same headers, no body, and the length a GET would have', async () => {
      const getAnswer = await get('v/seg.ts')
      await bodyOf(getAnswer)
      const head = await origin.fetch({ path: 'v/seg.ts', method: 'HEAD', headers: {} })
      assert.equal(head.status, 200)
      assert.equal(head.body, null)
      assert.equal(head.length, SIZE)
      assert.deepEqual(head.headers, getAnswer.headers)
    })

    it('playlists and keys get their types and cache policies', async () => {
      const playlist = await get('a.m3u8')
      assert.equal(playlist.headers['content-type'], 'application/vnd.apple.mpegurl')
      assert.equal(playlist.headers['cache-control'], 'private, no-cache')
      assert.equal((await bodyOf(playlist)).toString(), '#EXTM3U\n')
      const key = await get('enc.key')
      assert.equal(key.headers['content-type'], 'application/octet-stream')
      assert.equal(key.headers['cache-control'], 'private, no-store')
      assert.equal((await bodyOf(key)).length, 16)
    })

    it('an empty file is a 200 with an empty body', async () => {
      const answer = await get('empty.ts')
      assert.equal(answer.status, 200)
      assert.equal(answer.length, 0)
      assert.equal(answer.headers['content-length'], '0')
      assert.equal((await bodyOf(answer)).length, 0)
      const err = await rejectsWith(get('empty.ts', { range: 'bytes=0-' }), RangeNotSatisfiableError)
      assert.equal(err.size, 0)
    })

    it('a Last-Modified in the future is clamped to now (RFC 9110 §8.8.2.1)', async (t) => {
      const future = new Date(Date.UTC(2099, 0, 1))
      const path = join(root, 'future.ts')
      writeFileSync(path, 'x')
      utimesSync(path, future, future)
      t.after(() => rmSync(path))
      const now = Date.UTC(2030, 5, 6, 7, 8, 9)
      const clocked = new FsOrigin(root, { now: () => now })
      const answer = await clocked.fetch({ path: 'future.ts', method: 'HEAD', headers: {} })
      assert.equal(answer.headers['last-modified'], new Date(now).toUTCString())
    })
  })

  describe('FsOrigin: ranges (RFC 9110 §14)', () => {
    const cases: Array<[string, number, number]> = [
      ['bytes=100-199', 100, 199],
      ['bytes=900-', 900, 999],
      ['bytes=-10', 990, 999],
      ['bytes=990-5000', 990, 999], // beyond the end: clamped
      ['bytes=0-0', 0, 0],
      ['bytes=-5000', 0, 999]
    ]
    for (const [range, start, end] of cases) {
      it(`${range} → 206 bytes ${start}-${end}/1000`, async () => {
        const answer = await get('v/seg.ts', { range })
        assert.equal(answer.status, 206)
        assert.equal(answer.headers['content-range'], `bytes ${start}-${end}/${SIZE}`)
        assert.equal(answer.headers['content-length'], String(end - start + 1))
        assert.equal(answer.length, end - start + 1)
        assert.deepEqual(await bodyOf(answer), content.subarray(start, end + 1))
      })
    }

    it('HEAD with a range answers as the GET would: 206 and its length', async () => {
      const answer = await origin.fetch({ path: 'v/seg.ts', method: 'HEAD', headers: { range: 'bytes=10-19' } })
      assert.equal(answer.status, 206)
      assert.equal(answer.body, null)
      assert.equal(answer.length, 10)
      assert.equal(answer.headers['content-range'], 'bytes 10-19/1000')
    })

    for (const range of ['bytes=1000-', 'bytes=5000-6000', 'bytes=-0']) {
      it(`${range} → 416 with the size`, async () => {
        const err = await rejectsWith(get('v/seg.ts', { range }), RangeNotSatisfiableError)
        assert.equal(err.size, SIZE)
        assert.equal(err.statusCode, 416)
      })
    }

    for (const range of ['bytes=0-9,20-29', 'bytes=9-5', 'bytes=x', 'lines=1-2']) {
      it(`${range} is ignored: 200 in full`, async () => {
        const answer = await get('v/seg.ts', { range })
        assert.equal(answer.status, 200)
        assert.equal(answer.headers['content-range'], undefined)
        assert.deepEqual(await bodyOf(answer), content)
      })
    }

    it('If-Range with the current ETag → 206', async () => {
      const { headers: { etag } } = await origin.fetch({ path: 'v/seg.ts', method: 'HEAD', headers: {} })
      const answer = await get('v/seg.ts', { range: 'bytes=0-9', 'if-range': etag })
      assert.equal(answer.status, 206)
      assert.deepEqual(await bodyOf(answer), content.subarray(0, 10))
    })

    it('If-Range with the Last-Modified date → 206', async () => {
      const answer = await get('v/seg.ts', { range: 'bytes=0-9', 'if-range': 'Tue, 02 Jan 2024 03:04:05 GMT' })
      assert.equal(answer.status, 206)
      await bodyOf(answer)
    })

    for (const ifRange of ['"0-0"', 'W/"3e8-18cc8c4a2ce"', 'Mon, 01 Jan 2024 00:00:00 GMT']) {
      it(`If-Range ${ifRange} does not match → 200 in full`, async () => {
        const answer = await get('v/seg.ts', { range: 'bytes=0-9', 'if-range': ifRange })
        assert.equal(answer.status, 200)
        assert.equal(answer.headers['content-range'], undefined)
        assert.deepEqual(await bodyOf(answer), content)
      })
    }

    it('If-Range mismatch with an unsatisfiable range → 200, not 416', async () => {
      const answer = await get('v/seg.ts', { range: 'bytes=5000-', 'if-range': '"stale"' })
      assert.equal(answer.status, 200)
      await bodyOf(answer)
    })

    it('whole ignores Range and conditionals', async () => {
      const { headers: { etag } } = await origin.fetch({ path: 'v/seg.ts', method: 'HEAD', headers: {} })
      const answer = await get('v/seg.ts', { range: 'bytes=0-9', 'if-none-match': etag, 'if-range': etag }, { whole: true })
      assert.equal(answer.status, 200)
      assert.equal(answer.length, SIZE)
      assert.deepEqual(await bodyOf(answer), content)
      await rejectsWith(get('v/seg.ts', { range: 'bytes=5000-' }), RangeNotSatisfiableError)
      const whole = await get('v/seg.ts', { range: 'bytes=5000-' }, { whole: true })
      assert.equal(whole.status, 200)
      await bodyOf(whole)
    })
  })

  describe('FsOrigin: conditional requests (RFC 9110 §13)', () => {
    let etag: string
    before(async () => {
      etag = (await origin.fetch({ path: 'v/seg.ts', method: 'HEAD', headers: {} })).headers.etag as string
    })

    for (const [what, headers] of [
      ['If-None-Match with the ETag', () => ({ 'if-none-match': etag })],
      ['If-None-Match with the weak form of the ETag', () => ({ 'if-none-match': `W/${etag}` })],
      ['If-None-Match in a list', () => ({ 'if-none-match': `"nope", ${etag}` })],
      ['If-None-Match: *', () => ({ 'if-none-match': '*' })],
      ['If-Modified-Since = Last-Modified', () => ({ 'if-modified-since': 'Tue, 02 Jan 2024 03:04:05 GMT' })],
      ['If-Modified-Since later', () => ({ 'if-modified-since': 'Wed, 03 Jan 2024 00:00:00 GMT' })],
      ['If-None-Match matching and a Range', () => ({ 'if-none-match': etag, range: 'bytes=0-9' })]
    ] as Array<[string, () => ForwardedHeaders]>) {
      it(`${what} → 304 with validators and no body`, async () => {
        const answer = await get('v/seg.ts', headers())
        assert.equal(answer.status, 304)
        assert.equal(answer.body, null)
        assert.equal(answer.length, 0)
        assert.deepEqual(answer.headers, {
          etag,
          'last-modified': 'Tue, 02 Jan 2024 03:04:05 GMT',
          'cache-control': 'private, max-age=86400'
        })
      })
    }

    for (const [what, headers] of [
      ['If-None-Match with another tag', () => ({ 'if-none-match': '"other"' })],
      ['If-Modified-Since earlier', () => ({ 'if-modified-since': 'Mon, 01 Jan 2024 00:00:00 GMT' })],
      ['If-None-Match wins over a matching If-Modified-Since', () => ({ 'if-none-match': '"other"', 'if-modified-since': 'Wed, 03 Jan 2024 00:00:00 GMT' })],
      ['If-Modified-Since that is not a date', () => ({ 'if-modified-since': 'soon' })]
    ] as Array<[string, () => ForwardedHeaders]>) {
      it(`${what} → 200`, async () => {
        const answer = await get('v/seg.ts', headers())
        assert.equal(answer.status, 200)
        assert.deepEqual(await bodyOf(answer), content)
      })
    }

    it('HEAD answers 304 as a GET would', async () => {
      const answer = await origin.fetch({ path: 'v/seg.ts', method: 'HEAD', headers: { 'if-none-match': etag } })
      assert.equal(answer.status, 304)
      assert.equal(answer.body, null)
    })
  })
}

describe('FsOrigin: confinement', () => {
  for (const [what, path] of [
    ['a symlink to a file outside the root', 'escape.txt'],
    ['a path through a symlinked directory outside the root', 'up/secret.txt'],
    ['a symlink to the root\'s parent', 'up'],
    ['a directory', 'dir'],
    ['a directory symlink inside', 'vlink'],
    ['a missing file', 'nope.ts'],
    ['a missing directory', 'nope/nope.ts'],
    ['a file used as a directory', 'v/seg.ts/x'],
    ['a dangling symlink', 'dangling.ts'],
    ['a FIFO (and the open does not block)', 'fifo.ts']
  ] as Array<[string, string]>) {
    it(`${what} → 404`, async () => {
      const err = await rejectsWith(get(path), NotFoundError)
      assert.equal(err.statusCode, 404)
      assert.equal(err.message, 'not found')
    })
  }

  it('a symlink to a file inside the root is served', async () => {
    const answer = await get('inside-link.ts')
    assert.equal(answer.status, 200)
    assert.deepEqual(await bodyOf(answer), content)
  })

  it('a path through a symlinked directory inside the root is served', async () => {
    const answer = await get('vlink/seg.ts', { range: 'bytes=0-3' })
    assert.equal(answer.status, 206)
    assert.deepEqual(await bodyOf(answer), content.subarray(0, 4))
  })

  it('a root given through a symlink works, and its own escapes are still refused', async () => {
    const linked = new FsOrigin(join(base, 'root-link'))
    const answer = await linked.fetch({ path: 'v/seg.ts', method: 'GET', headers: {} })
    assert.deepEqual(await bodyOf(answer), content)
    await rejectsWith(linked.fetch({ path: 'escape.txt', method: 'GET', headers: {} }), NotFoundError)
  })

  it('a missing root is an unreachable origin, recovered once it appears', async () => {
    const later = join(base, 'later')
    const o = new FsOrigin(later)
    await rejectsWith(o.fetch({ path: 'a.ts', method: 'GET', headers: {} }), OriginUnreachableError)
    mkdirSync(later)
    writeFileSync(join(later, 'a.ts'), 'abc')
    const answer = await o.fetch({ path: 'a.ts', method: 'GET', headers: {} })
    assert.equal((await bodyOf(answer)).toString(), 'abc')
  })

  it('after close(), fetch refuses with ShuttingDownError; close is idempotent', async () => {
    const o = new FsOrigin(root)
    await o.close()
    await o.close()
    await rejectsWith(o.fetch({ path: 'v/seg.ts', method: 'GET', headers: {} }), ShuttingDownError)
  })
})

describe('FsOrigin: descriptors', () => {
  const openFds = (): number => readdirSync('/proc/self/fd').length
  // Bodies larger than `bufferMax` are streams that own the descriptor.
  let streaming: FsOrigin
  before(() => { streaming = new FsOrigin(root, { bufferMax: 100 }) })
  after(() => streaming.close())

  it('destroying a file body closes its descriptor; reading it afterwards rejects', async () => {
    const before = openFds()
    const answer = await streaming.fetch({ path: 'v/seg.ts', method: 'GET', headers: {} })
    assert.ok(answer.body instanceof FileBody)
    assert.equal(openFds(), before + 1)
    answer.body.destroy()
    await waitFor(() => openFds() === before, 2000, 'the descriptor to be closed')
    await assert.rejects(answer.body.readAll(SIZE), /destroyed/)
  })

  it('200 requests of every kind leave no descriptor open', async () => {
    const etag = (await origin.fetch({ path: 'v/seg.ts', method: 'HEAD', headers: {} })).headers.etag as string
    // Warm up whatever the runtime opens once (libuv, procfs…), then count.
    await bodyOf(await get('v/seg.ts'))
    await bodyOf(await streaming.fetch({ path: 'v/seg.ts', method: 'GET', headers: {} }))
    const before = openFds()
    for (let i = 0; i < 200; i++) {
      switch (i % 10) {
        case 0: await bodyOf(await get('v/seg.ts')); break
        case 1: assert.equal((await origin.fetch({ path: 'v/seg.ts', method: 'HEAD', headers: {} })).body, null); break
        case 2: assert.equal((await get('v/seg.ts', { 'if-none-match': etag })).status, 304); break
        case 3: await bodyOf(await streaming.fetch({ path: 'v/seg.ts', method: 'GET', headers: { range: 'bytes=5-500' } })); break
        case 4: await rejectsWith(get('v/seg.ts', { range: 'bytes=5000-' }), RangeNotSatisfiableError); break
        case 5: await rejectsWith(get('escape.txt'), NotFoundError); break
        case 6: await rejectsWith(get('dir'), NotFoundError); break
        case 7: await bodyOf(await get('empty.ts')); break
        case 8: {
          // The consumer gives up: destroying the body must close the file.
          const body = (await streaming.fetch({ path: 'v/seg.ts', method: 'GET', headers: {} })).body as PushedBody
          body.destroy()
          break
        }
        default: await rejectsWith(get('fifo.ts'), NotFoundError)
      }
    }
    await waitFor(() => openFds() === before, 2000, 'every descriptor to be closed') // a destroyed body closes its file asynchronously
  })
})

describe('FsOrigin: file replaced between requests', () => {
  it('a rewritten file gets a new ETag, so a stale If-None-Match is a 200', async (t) => {
    const path = join(root, 'changing.ts')
    writeFileSync(path, 'one')
    utimesSync(path, MTIME, MTIME)
    t.after(() => rmSync(path))
    const first = await origin.fetch({ path: 'changing.ts', method: 'HEAD', headers: {} })
    writeFileSync(path, 'three')
    const st = statSync(path)
    assert.notEqual(st.mtimeMs, MTIME.getTime())
    const second = await get('changing.ts', { 'if-none-match': first.headers.etag })
    assert.equal(second.status, 200)
    assert.notEqual(second.headers.etag, first.headers.etag)
    assert.equal((await bodyOf(second)).toString(), 'three')
  })
})
