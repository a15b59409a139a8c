import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import {
  appendFileSync, linkSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync, symlinkSync,
  truncateSync, unlinkSync, utimesSync, writeFileSync
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { request } from 'undici'
import { NotFoundError, OriginError, RangeNotSatisfiableError } from '../../src/errors.ts'
import { FsOrigin } from '../../src/server/origin/fs-origin.ts'
import type { FsOriginOptions } from '../../src/server/origin/fs-origin.ts'
import { BufferBody } from '../../src/server/origin/buffer-body.ts'
import { FileBody } from '../../src/server/origin/file-body.ts'
import type { ForwardedHeaders, OriginResponse } from '../../src/server/origin/origin.ts'
import { bodyOf, rejectsWith } from '../helpers/origin-assert.ts'
import { startTestServer } from '../helpers/test-server.ts'

const TTL = 2000
const MTIME = new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 678))
const LATER = new Date(Date.UTC(2024, 5, 6, 7, 8, 9, 123))
const LARGE = 200 * 1024

/** Deterministic bytes, different for each `seed`. */
function bytes (length: number, seed = 1): Buffer {
  return Buffer.from(Array.from({ length }, (_, i) => (i * 31 + seed * 7) & 0xff))
}

const base = mkdtempSync(join(tmpdir(), 'sm-fs-cache-'))
const root = join(base, 'root')
const outside = join(base, 'outside')
mkdirSync(join(root, 'v'), { recursive: true })
mkdirSync(outside)
writeFileSync(join(outside, 'secret.ts'), 'TOP-SECRET')
after(() => rmSync(base, { recursive: true, force: true }))

let n = 0
/** A fresh directory under the root, so that each test has paths no other test cached. */
function fresh (): string {
  const dir = `t${++n}`
  mkdirSync(join(root, dir))
  return dir
}

/** A file under the root with a fixed mtime. */
function put (path: string, content: Buffer | string, mtime = MTIME): void {
  writeFileSync(join(root, path), content)
  utimesSync(join(root, path), mtime, mtime)
}

/** An origin with a clock the test moves by hand (the path cache's TTL). */
function originWith (options: FsOriginOptions = {}): { origin: FsOrigin, advance: (ms: number) => void } {
  let clock = 1_000_000
  const origin = new FsOrigin(root, { pathCacheTtl: TTL, monotonicNow: () => clock, ...options })
  return { origin, advance: (ms) => { clock += ms } }
}

function etagOf (path: string): string {
  const st = statSync(join(root, path), { bigint: true })
  return `"${st.size.toString(16)}-${(st.mtimeNs / 1_000_000n).toString(16)}"`
}

function get (origin: FsOrigin, path: string, headers: ForwardedHeaders = {}): Promise<OriginResponse> {
  return origin.fetch({ path, method: 'GET', headers })
}

describe('FsOrigin: small bodies are Buffers, large ones streams', () => {
  const { origin } = originWith()
  const small = bytes(1000)
  const large = bytes(LARGE, 2)
  before(() => {
    put('v/small.ts', small)
    put('v/large.ts', large)
    put('v/edge.ts', bytes(64 * 1024, 3))
    put('v/edge1.ts', bytes(64 * 1024 + 1, 4))
  })

  it('a small file answers with a Buffer of exactly its bytes', async () => {
    const answer = await get(origin, 'v/small.ts')
    assert.ok(answer.body instanceof BufferBody)
    assert.equal(answer.status, 200)
    assert.equal(answer.length, 1000)
    assert.equal(answer.headers['content-length'], '1000')
    assert.equal(answer.headers.etag, etagOf('v/small.ts'))
    assert.deepEqual(await bodyOf(answer), small)
  })

  it('64 KiB is still a Buffer; one byte more is read in chunks', async () => {
    const edge = await get(origin, 'v/edge.ts')
    assert.ok(edge.body instanceof BufferBody)
    assert.deepEqual(await bodyOf(edge), bytes(64 * 1024, 3))
    const over = await get(origin, 'v/edge1.ts')
    assert.ok(over.body instanceof FileBody)
    assert.deepEqual(await bodyOf(over), bytes(64 * 1024 + 1, 4))
  })

  const cases: Array<[string, string, number, number, 'buffer' | 'stream']> = [
    ['v/small.ts', 'bytes=10-19', 10, 19, 'buffer'],
    ['v/small.ts', 'bytes=-1', 999, 999, 'buffer'],
    ['v/small.ts', 'bytes=500-', 500, 999, 'buffer'],
    ['v/large.ts', 'bytes=0-99', 0, 99, 'buffer'],
    ['v/large.ts', 'bytes=-100', LARGE - 100, LARGE - 1, 'buffer'],
    ['v/large.ts', `bytes=1000-${1000 + 64 * 1024 - 1}`, 1000, 1000 + 64 * 1024 - 1, 'buffer'],
    ['v/large.ts', `bytes=1000-${1000 + 64 * 1024}`, 1000, 1000 + 64 * 1024, 'stream'],
    ['v/large.ts', 'bytes=100000-', 100000, LARGE - 1, 'stream']
  ]
  for (const [path, range, start, end, kind] of cases) {
    it(`${path} ${range} → 206 ${start}-${end}, read as a ${kind}`, async () => {
      const answer = await get(origin, path, { range })
      assert.equal(answer.status, 206)
      assert.equal(answer.body instanceof BufferBody, kind === 'buffer')
      const size = path === 'v/large.ts' ? LARGE : 1000
      assert.equal(answer.headers['content-range'], `bytes ${start}-${end}/${size}`)
      assert.equal(answer.headers['content-length'], String(end - start + 1))
      assert.deepEqual(await bodyOf(answer), (path === 'v/large.ts' ? large : small).subarray(start, end + 1))
    })
  }

  it('a large file in full is a file body of exactly its bytes', async () => {
    const answer = await get(origin, 'v/large.ts')
    assert.ok(answer.body instanceof FileBody)
    assert.equal(answer.length, LARGE)
    assert.deepEqual(await bodyOf(answer), large)
  })

  it('over a socket: a small file and a small range arrive exact, with their lengths', async (t) => {
    const server = await startTestServer({ root })
    t.after(() => server.close())
    const whole = await request(`${server.url}/v/small.ts?uid=u1`)
    assert.equal(whole.statusCode, 200)
    assert.equal(whole.headers['content-length'], '1000')
    assert.deepEqual(Buffer.from(await whole.body.arrayBuffer()), small)
    const part = await request(`${server.url}/v/large.ts?uid=u1`, { headers: { range: 'bytes=5-14' } })
    assert.equal(part.statusCode, 206)
    assert.equal(part.headers['content-range'], `bytes 5-14/${LARGE}`)
    assert.deepEqual(Buffer.from(await part.body.arrayBuffer()), large.subarray(5, 15))
  })
})

describe('FsOrigin: the path cache never serves what a full check would not', () => {
  it('a second request within the TTL is a hit; after the TTL the full check runs again', async () => {
    const dir = fresh()
    put(`${dir}/a.ts`, 'abc')
    const { origin, advance } = originWith()
    await get(origin, `${dir}/a.ts`)
    assert.deepEqual(origin.pathCacheStats, { entries: 1, hits: 0, fullChecks: 1 })
    assert.equal((await bodyOf(await get(origin, `${dir}/a.ts`))).toString(), 'abc')
    assert.deepEqual(origin.pathCacheStats, { entries: 1, hits: 1, fullChecks: 1 })
    advance(TTL)
    assert.equal((await bodyOf(await get(origin, `${dir}/a.ts`))).toString(), 'abc')
    assert.deepEqual(origin.pathCacheStats, { entries: 1, hits: 1, fullChecks: 2 })
  })

  it('a file replaced by a new one (rename over it) after being cached is served new, with new validators', async () => {
    const dir = fresh()
    put(`${dir}/seg.ts`, 'old bytes')
    const { origin } = originWith()
    const first = await get(origin, `${dir}/seg.ts`)
    assert.equal((await bodyOf(first)).toString(), 'old bytes')
    writeFileSync(join(root, dir, 'next.tmp'), 'the new bytes')
    utimesSync(join(root, dir, 'next.tmp'), LATER, LATER)
    renameSync(join(root, dir, 'next.tmp'), join(root, dir, 'seg.ts'))
    const second = await get(origin, `${dir}/seg.ts`, { 'if-none-match': first.headers.etag })
    assert.equal(second.status, 200)
    assert.equal((await bodyOf(second)).toString(), 'the new bytes')
    assert.equal(second.headers.etag, etagOf(`${dir}/seg.ts`))
    assert.notEqual(second.headers.etag, first.headers.etag)
    assert.equal(second.headers['last-modified'], LATER.toUTCString())
    assert.equal(second.headers['content-length'], '13')
    // The new inode failed the identity check: a full check ran, and is remembered.
    assert.deepEqual(origin.pathCacheStats, { entries: 1, hits: 0, fullChecks: 2 })
    assert.equal((await bodyOf(await get(origin, `${dir}/seg.ts`))).toString(), 'the new bytes')
    assert.equal(origin.pathCacheStats.hits, 1)
  })

  it('a file deleted and written again (the inode number may be reused) is served new', async () => {
    const dir = fresh()
    put(`${dir}/seg.ts`, 'first')
    const { origin } = originWith()
    await bodyOf(await get(origin, `${dir}/seg.ts`))
    unlinkSync(join(root, dir, 'seg.ts'))
    put(`${dir}/seg.ts`, 'second!', LATER)
    const answer = await get(origin, `${dir}/seg.ts`)
    assert.equal((await bodyOf(answer)).toString(), 'second!')
    assert.equal(answer.headers.etag, etagOf(`${dir}/seg.ts`))
  })

  it('a file grown in place serves the new size and validators', async () => {
    const dir = fresh()
    put(`${dir}/live.ts`, bytes(100))
    const { origin } = originWith()
    const first = await get(origin, `${dir}/live.ts`)
    await bodyOf(first)
    appendFileSync(join(root, dir, 'live.ts'), bytes(50, 9))
    utimesSync(join(root, dir, 'live.ts'), LATER, LATER)
    const grown = await get(origin, `${dir}/live.ts`)
    assert.equal(grown.length, 150)
    assert.equal(grown.headers['content-length'], '150')
    assert.equal(grown.headers.etag, etagOf(`${dir}/live.ts`))
    assert.notEqual(grown.headers.etag, first.headers.etag)
    assert.equal(grown.headers['last-modified'], LATER.toUTCString())
    assert.deepEqual(await bodyOf(grown), Buffer.concat([bytes(100), bytes(50, 9)]))
    const tail = await get(origin, `${dir}/live.ts`, { range: 'bytes=120-' })
    assert.equal(tail.headers['content-range'], 'bytes 120-149/150')
    assert.deepEqual(await bodyOf(tail), bytes(50, 9).subarray(20))
    assert.equal(origin.pathCacheStats.fullChecks, 1)
  })

  it('a file shrunk in place serves the new size and validators; a range past the new end is a 416', async () => {
    const dir = fresh()
    put(`${dir}/cut.ts`, bytes(LARGE))
    const { origin } = originWith()
    await bodyOf(await get(origin, `${dir}/cut.ts`))
    truncateSync(join(root, dir, 'cut.ts'), 300)
    utimesSync(join(root, dir, 'cut.ts'), LATER, LATER)
    const cut = await get(origin, `${dir}/cut.ts`)
    assert.ok(cut.body instanceof BufferBody)
    assert.equal(cut.length, 300)
    assert.equal(cut.headers.etag, etagOf(`${dir}/cut.ts`))
    assert.deepEqual(await bodyOf(cut), bytes(LARGE).subarray(0, 300))
    const err = await rejectsWith(get(origin, `${dir}/cut.ts`, { range: 'bytes=1000-' }), RangeNotSatisfiableError)
    assert.equal(err.size, 300)
    assert.equal(origin.pathCacheStats.fullChecks, 1)
  })

  it('a cached file swapped for a symlink leading out of the root is a 404', async () => {
    const dir = fresh()
    put(`${dir}/x.ts`, 'inside')
    const { origin } = originWith()
    await bodyOf(await get(origin, `${dir}/x.ts`))
    unlinkSync(join(root, dir, 'x.ts'))
    symlinkSync(join(outside, 'secret.ts'), join(root, dir, 'x.ts'))
    await rejectsWith(get(origin, `${dir}/x.ts`), NotFoundError)
    assert.equal(origin.pathCacheStats.entries, 0)
    // And it stays refused: nothing about the escape was remembered.
    await rejectsWith(get(origin, `${dir}/x.ts`), NotFoundError)
  })

  it('a cached file whose directory is swapped for a symlink leading out is a 404, not the outside file', async () => {
    const dir = fresh()
    mkdirSync(join(root, dir, 'd'))
    put(`${dir}/d/secret.ts`, 'inside')
    const { origin } = originWith()
    await bodyOf(await get(origin, `${dir}/d/secret.ts`))
    renameSync(join(root, dir, 'd'), join(root, dir, 'd-old'))
    symlinkSync(outside, join(root, dir, 'd'))
    await rejectsWith(get(origin, `${dir}/d/secret.ts`), NotFoundError)
    await rejectsWith(get(origin, `${dir}/d/secret.ts`), NotFoundError)
  })

  it('a file moved out of the root, its directory replaced by a symlink to it, is refused once the TTL is over', async () => {
    const dir = fresh()
    mkdirSync(join(root, dir, 'd'))
    put(`${dir}/d/f.ts`, 'was inside')
    const { origin, advance } = originWith()
    await bodyOf(await get(origin, `${dir}/d/f.ts`))
    const moved = join(outside, `${dir}-moved`)
    renameSync(join(root, dir, 'd'), moved)
    symlinkSync(moved, join(root, dir, 'd'))
    // Within the TTL a hit still accepts this inode: it is the very file that
    // was proved inside the root, holding what it held (the class comment's
    // one bounded exception). Once the TTL is over the full check refuses it.
    assert.equal((await bodyOf(await get(origin, `${dir}/d/f.ts`))).toString(), 'was inside')
    advance(TTL)
    await rejectsWith(get(origin, `${dir}/d/f.ts`), NotFoundError)
  })

  it('a hard link to an outside file put in place of a cached file is not the cached inode: served only if the full check passes', async () => {
    const dir = fresh()
    put(`${dir}/h.ts`, 'inside')
    const { origin } = originWith()
    await bodyOf(await get(origin, `${dir}/h.ts`))
    unlinkSync(join(root, dir, 'h.ts'))
    linkSync(join(outside, 'secret.ts'), join(root, dir, 'h.ts'))
    // A hard link has no "outside": the full check accepts it, as it did before
    // there was a cache. What matters here is that the hit did not pass it on
    // the old entry's word.
    await bodyOf(await get(origin, `${dir}/h.ts`))
    assert.deepEqual(origin.pathCacheStats, { entries: 1, hits: 0, fullChecks: 2 })
  })

  it('a FIFO put in place of a cached file is a 404 (and the open does not block)', async () => {
    const dir = fresh()
    put(`${dir}/p.ts`, 'file')
    const { origin } = originWith()
    await bodyOf(await get(origin, `${dir}/p.ts`))
    unlinkSync(join(root, dir, 'p.ts'))
    execFileSync('mkfifo', [join(root, dir, 'p.ts')])
    await rejectsWith(get(origin, `${dir}/p.ts`), NotFoundError)
  })

  it('a cached file that disappears is a 404', async () => {
    const dir = fresh()
    put(`${dir}/gone.ts`, 'here')
    const { origin } = originWith()
    await bodyOf(await get(origin, `${dir}/gone.ts`))
    unlinkSync(join(root, dir, 'gone.ts'))
    await rejectsWith(get(origin, `${dir}/gone.ts`), NotFoundError)
    assert.equal(origin.pathCacheStats.entries, 0)
  })

  it('a directory symlink re-pointed inside the root is followed at once', async () => {
    const dir = fresh()
    mkdirSync(join(root, dir, 'v1'))
    mkdirSync(join(root, dir, 'v2'))
    put(`${dir}/v1/index.m3u8`, '#EXTM3U\n#v1\n')
    put(`${dir}/v2/index.m3u8`, '#EXTM3U\n#v2\n')
    symlinkSync('v1', join(root, dir, 'current'))
    const { origin } = originWith()
    assert.match((await bodyOf(await get(origin, `${dir}/current/index.m3u8`))).toString(), /#v1/)
    symlinkSync('v2', join(root, dir, 'current.new'))
    renameSync(join(root, dir, 'current.new'), join(root, dir, 'current'))
    assert.match((await bodyOf(await get(origin, `${dir}/current/index.m3u8`))).toString(), /#v2/)
  })

  it('a file reached through a symlink is served from the cache, and a re-pointed link is followed once the TTL is over', async () => {
    const dir = fresh()
    put(`${dir}/a.ts`, 'target a')
    put(`${dir}/b.ts`, 'target b')
    symlinkSync('a.ts', join(root, dir, 'link.ts'))
    const { origin, advance } = originWith()
    assert.equal((await bodyOf(await get(origin, `${dir}/link.ts`))).toString(), 'target a')
    assert.equal((await bodyOf(await get(origin, `${dir}/link.ts`))).toString(), 'target a')
    assert.deepEqual(origin.pathCacheStats, { entries: 1, hits: 1, fullChecks: 1 })
    symlinkSync('b.ts', join(root, dir, 'link.new'))
    renameSync(join(root, dir, 'link.new'), join(root, dir, 'link.ts'))
    advance(TTL)
    assert.equal((await bodyOf(await get(origin, `${dir}/link.ts`))).toString(), 'target b')
  })

  it('a symlink with the same base name as its target is learnt from O_NOFOLLOW and then served from the cache', async () => {
    const dir = fresh()
    mkdirSync(join(root, dir, 'real'))
    put(`${dir}/real/s.ts`, 'linked')
    symlinkSync('real/s.ts', join(root, dir, 's.ts'))
    const { origin } = originWith()
    for (let i = 0; i < 4; i++) assert.equal((await bodyOf(await get(origin, `${dir}/s.ts`))).toString(), 'linked')
    // First request: full check. Second: the hit's O_NOFOLLOW open refuses the
    // link, the full check runs again and remembers to open the real path.
    assert.deepEqual(origin.pathCacheStats, { entries: 1, hits: 2, fullChecks: 2 })
  })

  it('a file rewritten in place while it is read: every answer\'s body has its Content-Length, and its ETag says that size', async (t) => {
    const dir = fresh()
    const path = join(root, dir, 'busy.m3u8')
    writeFileSync(path, 'a'.repeat(100))
    // Another process rewrites the file in place (truncate, then write) as
    // fast as it can, alternating between 100 and 200 bytes, so that reads
    // in the thread pool land before, between and after its writes.
    const writer = spawn(process.execPath, ['-e', `
      const fs = require('node:fs')
      const end = Date.now() + 400
      for (let i = 0; Date.now() < end; i++) fs.writeFileSync(${JSON.stringify(path)}, (i % 2 ? 'b' : 'a').repeat(100 * (1 + (i % 2))))
    `], { stdio: 'ignore' })
    t.after(() => writer.kill())
    const { origin } = originWith()
    let answers = 0
    const exited = { done: false }
    writer.once('exit', () => { exited.done = true })
    while (!exited.done) {
      const batch = await Promise.allSettled(Array.from({ length: 8 }, () => get(origin, `${dir}/busy.m3u8`)))
      for (const result of batch) {
        if (result.status === 'rejected') {
          // Still changing after three reads: a 502, never a short body.
          assert.ok(result.reason instanceof OriginError, String(result.reason))
          continue
        }
        const answer = result.value
        const body = await bodyOf(answer)
        assert.equal(body.length, Number(answer.headers['content-length']))
        assert.equal(answer.headers.etag?.split('-')[0], `"${body.length.toString(16)}`)
        assert.match(body.toString('latin1'), /^[ab]*$/) // empty: caught between truncate and write
        answers++
      }
    }
    assert.ok(answers > 0)
  })

  it('concurrent requests for the same paths all get exact bytes', async () => {
    const dir = fresh()
    for (let i = 0; i < 10; i++) put(`${dir}/c${i}.ts`, bytes(3000 + i, i))
    const { origin } = originWith()
    const answers = await Promise.all(Array.from({ length: 200 }, (_, k) => get(origin, `${dir}/c${k % 10}.ts`)))
    for (const [k, answer] of answers.entries()) assert.deepEqual(await bodyOf(answer), bytes(3000 + (k % 10), k % 10))
    assert.equal(origin.pathCacheStats.entries, 10)
  })
})

describe('FsOrigin: the path cache is bounded', () => {
  it('holds at most pathCacheSize entries, dropping the oldest check first', async () => {
    const dir = fresh()
    for (let i = 0; i < 50; i++) put(`${dir}/f${i}.ts`, `file ${i}`)
    const { origin } = originWith({ pathCacheSize: 8 })
    for (let i = 0; i < 50; i++) {
      assert.equal((await bodyOf(await get(origin, `${dir}/f${i}.ts`))).toString(), `file ${i}`)
      assert.ok(origin.pathCacheStats.entries <= 8)
    }
    assert.deepEqual(origin.pathCacheStats, { entries: 8, hits: 0, fullChecks: 50 })
    await bodyOf(await get(origin, `${dir}/f49.ts`)) // among the last 8: a hit
    await bodyOf(await get(origin, `${dir}/f0.ts`)) // dropped long ago: a full check
    assert.deepEqual(origin.pathCacheStats, { entries: 8, hits: 1, fullChecks: 51 })
  })

  it('expired entries are swept as new ones come in', async () => {
    const dir = fresh()
    for (let i = 0; i < 6; i++) put(`${dir}/e${i}.ts`, 'x')
    const { origin, advance } = originWith()
    for (let i = 0; i < 4; i++) await bodyOf(await get(origin, `${dir}/e${i}.ts`))
    advance(TTL)
    await bodyOf(await get(origin, `${dir}/e4.ts`))
    await bodyOf(await get(origin, `${dir}/e5.ts`))
    assert.equal(origin.pathCacheStats.entries, 2)
  })

  it('pathCacheSize 0 turns the cache off', async () => {
    const dir = fresh()
    put(`${dir}/o.ts`, 'x')
    const { origin } = originWith({ pathCacheSize: 0 })
    for (let i = 0; i < 3; i++) await bodyOf(await get(origin, `${dir}/o.ts`))
    assert.deepEqual(origin.pathCacheStats, { entries: 0, hits: 0, fullChecks: 3 })
  })

  it('hits, fallbacks and refusals leave no descriptor open', async () => {
    const openFds = (): number => readdirSync('/proc/self/fd').length
    const dir = fresh()
    put(`${dir}/k.ts`, bytes(2000))
    put(`${dir}/big.ts`, bytes(LARGE))
    const { origin } = originWith()
    await bodyOf(await get(origin, `${dir}/k.ts`))
    await bodyOf(await get(origin, `${dir}/big.ts`))
    const before = openFds()
    for (let i = 0; i < 60; i++) {
      switch (i % 6) {
        case 0: await bodyOf(await get(origin, `${dir}/k.ts`)); break
        case 1: await bodyOf(await get(origin, `${dir}/big.ts`, { range: 'bytes=10-' })); break
        case 2: {
          // Replace the file: the hit's identity check fails and falls back.
          writeFileSync(join(root, dir, 'k.new'), bytes(2000, i))
          renameSync(join(root, dir, 'k.new'), join(root, dir, 'k.ts'))
          assert.deepEqual(await bodyOf(await get(origin, `${dir}/k.ts`)), bytes(2000, i))
          break
        }
        case 3: await rejectsWith(get(origin, `${dir}/k.ts`, { range: 'bytes=5000-' }), RangeNotSatisfiableError); break
        case 4: assert.equal((await origin.fetch({ path: `${dir}/k.ts`, method: 'HEAD', headers: {} })).body, null); break
        default: await rejectsWith(get(origin, `${dir}/nope.ts`), NotFoundError)
      }
    }
    assert.equal(openFds(), before)
  })
})
