import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { request } from 'undici'
import { startStaticOrigin } from '../helpers/static-origin.ts'
import { startTestServer } from '../helpers/test-server.ts'
import type { TestServer } from '../helpers/test-server.ts'

const KEY = 'file-check-key'
const base = mkdtempSync(join(tmpdir(), 'sm-file-check-'))
const root = join(base, 'root')
mkdirSync(join(root, 'v'), { recursive: true })
writeFileSync(join(root, 'v/seg.ts'), Buffer.alloc(5000, 1))
writeFileSync(join(root, 'v/a b.ts'), Buffer.alloc(7, 1))
writeFileSync(join(root, 'v/.env'), 'SECRET=1')
writeFileSync(join(base, 'outside.ts'), 'x')
symlinkSync(join(base, 'outside.ts'), join(root, 'v/escape.ts'))
after(() => rmSync(base, { recursive: true, force: true }))

interface Answer { status: number, body: any, challenge: string | undefined }

/** POST `body` as JSON (or `raw`); `authorization` null sends no such header. */
async function post (server: TestServer, path: string, body: unknown, authorization: string | null = `Bearer ${KEY}`, raw?: string): Promise<Answer> {
  const res = await request(`${server.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(authorization === null ? {} : { authorization }) },
    body: raw ?? JSON.stringify(body)
  })
  const text = await res.body.text()
  assert.equal(res.headers['content-type'], 'application/json; charset=utf-8', text)
  return { status: res.statusCode, body: JSON.parse(text), challenge: res.headers['www-authenticate'] as string | undefined }
}

describe('the file-check API (POST /api/file/check, /api/file/check/batch)', () => {
  it('answers the Python proxy\'s shapes from the filesystem origin, confined to it', async (t) => {
    const server = await startTestServer({ root, accessApiKey: KEY })
    t.after(() => server.close())
    assert.deepEqual((await post(server, '/api/file/check', { path: '/v/seg.ts' })).body, { path: '/v/seg.ts', exists: true, size: 5000 })
    assert.deepEqual((await post(server, '/api/file/check', { path: 'v/a b.ts' })).body, { path: 'v/a b.ts', exists: true, size: 7 })
    for (const path of ['/v/none.ts', '/v/.env', '/v/escape.ts', '/v']) {
      assert.deepEqual((await post(server, '/api/file/check', { path })).body, { path, exists: false }, path)
    }
    const batch = await post(server, '/api/file/check/batch', { paths: ['/v/seg.ts', '/v/none.ts', 'v/a b.ts', '/v/.env'] })
    assert.equal(batch.status, 200)
    assert.deepEqual(batch.body, {
      results: [
        { path: '/v/seg.ts', exists: true, size: 5000 },
        { path: '/v/none.ts', exists: false },
        { path: 'v/a b.ts', exists: true, size: 7 },
        { path: '/v/.env', exists: false }
      ],
      total: 4,
      exists_count: 2,
      not_found_count: 2,
      error_count: 0
    })
    const many = Array.from({ length: 100 }, (_, i) => i % 2 === 0 ? '/v/seg.ts' : `/v/none-${i}.ts`)
    const full = await post(server, '/api/file/check/batch', { paths: many })
    assert.deepEqual([full.status, full.body.total, full.body.exists_count, full.body.not_found_count], [200, 100, 50, 50])
    assert.deepEqual(full.body.results.map((r: { path: string }) => r.path), many, 'results in the order asked')
  })

  it('an HTTP origin: a HEAD there; a down origin is an error per path, not a failure of the call', async (t) => {
    const origin = await startStaticOrigin(root)
    const server = await startTestServer({ originUrl: origin.url, originTimeout: 2, accessApiKey: KEY })
    t.after(() => server.close())
    assert.deepEqual((await post(server, '/api/file/check', { path: '/v/seg.ts' })).body, { path: '/v/seg.ts', exists: true, size: 5000 })
    assert.deepEqual((await post(server, '/api/file/check', { path: '/v/none.ts' })).body, { path: '/v/none.ts', exists: false })
    await origin.close()
    const down = await post(server, '/api/file/check/batch', { paths: ['/v/seg.ts'] })
    assert.equal(down.status, 200)
    assert.equal(down.body.results[0].exists, false)
    assert.equal(typeof down.body.results[0].error, 'string')
    assert.deepEqual([down.body.exists_count, down.body.not_found_count, down.body.error_count], [0, 0, 1])
  })

  it('the key: Bearer or bare, else 401; without ACCESS_API_KEY the API is off (403)', async (t) => {
    const server = await startTestServer({ root, accessApiKey: KEY })
    const off = await startTestServer({ root })
    t.after(async () => { await server.close(); await off.close() })
    assert.equal((await post(server, '/api/file/check', { path: '/v/seg.ts' }, KEY)).status, 200)
    assert.equal((await post(server, '/api/file/check', { path: '/v/seg.ts' }, `bearer ${KEY}`)).status, 200)
    for (const auth of [null, 'Bearer wrong', `${KEY}x`, `Basic ${Buffer.from(`u:${KEY}`).toString('base64')}`, '']) {
      const answer = await post(server, '/api/file/check', { path: '/v/seg.ts' }, auth)
      assert.equal(answer.status, 401, String(auth))
      assert.equal(answer.body.error.code, 'SM_ERR_UNAUTHORIZED')
      assert.equal(answer.challenge, 'Bearer')
      assert.doesNotMatch(JSON.stringify(answer.body), new RegExp(KEY))
    }
    const closed = await post(off, '/api/file/check', { path: '/v/seg.ts' }, `Bearer ${KEY}`)
    assert.deepEqual([closed.status, closed.body.error.code], [403, 'SM_ERR_FORBIDDEN'])
  })

  it('bad input is a 400 JSON error: missing fields, wrong types, .. or empty segments, too many paths, huge or broken bodies', async (t) => {
    const server = await startTestServer({ root, accessApiKey: KEY })
    t.after(() => server.close())
    const cases: Array<[string, unknown, string?]> = [
      ['/api/file/check', {}],
      ['/api/file/check', { path: 5 }],
      ['/api/file/check', { path: null }],
      ['/api/file/check', []],
      ['/api/file/check', { path: '' }],
      ['/api/file/check', { path: '/v/../root/v/seg.ts' }],
      ['/api/file/check', { path: '/v//seg.ts' }],
      ['/api/file/check', { path: '/v/./seg.ts' }],
      ['/api/file/check', { path: '/v/a\\b.ts' }],
      ['/api/file/check', { path: '/v/a\u0000b.ts' }],
      ['/api/file/check', { path: '/v/a\nb.ts' }],
      ['/api/file/check', { path: `/v/${'a'.repeat(3000)}.ts` }],
      ['/api/file/check', { path: '/v/\ud800.ts' }],
      ['/api/file/check', undefined, '{"path": '],
      ['/api/file/check', { path: 'x'.repeat(40_000) }],
      ['/api/file/check/batch', {}],
      ['/api/file/check/batch', { paths: [] }],
      ['/api/file/check/batch', { paths: '/v/seg.ts' }],
      ['/api/file/check/batch', { paths: ['/v/seg.ts', 7] }],
      ['/api/file/check/batch', { paths: Array.from({ length: 101 }, () => '/v/seg.ts') }],
      ['/api/file/check/batch', { paths: ['/v/seg.ts', '/../etc/passwd'] }]
    ]
    for (const [path, body, raw] of cases) {
      const answer = await post(server, path, body, `Bearer ${KEY}`, raw)
      assert.equal(answer.status, 400, `${path} ${raw ?? JSON.stringify(body)?.slice(0, 80)}`)
      assert.equal(answer.body.error.code, 'SM_ERR_BAD_REQUEST')
    }
    // Which path of a batch was refused, and why.
    const batch = await post(server, '/api/file/check/batch', { paths: ['/v/seg.ts', '/../etc/passwd'] })
    assert.match(batch.body.error.message, /^paths\[1\]: /)
  })
})
