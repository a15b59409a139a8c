import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { request } from 'undici'
import { startTestServer } from '../helpers/test-server.ts'
import type { TestServer } from '../helpers/test-server.ts'

// An origin with files where the API lives: the media route would serve them.
const root = mkdtempSync(join(tmpdir(), 'sm-outbox-api-'))
mkdirSync(join(root, 'api', 'outbox'), { recursive: true })
writeFileSync(join(root, 'api', 'outbox.json'), 'ORIGIN FILE')
writeFileSync(join(root, 'api', 'outbox', 'retry'), 'ORIGIN FILE')
writeFileSync(join(root, 'api', 'other'), 'ORIGIN FILE')
after(() => rmSync(root, { recursive: true, force: true }))

const ADMIN = 'admin-token-outbox'
const API_KEY = 'api-key-never-shown'
const auth = { authorization: `Bearer ${ADMIN}` }

/** A server whose outbox holds `report-a` (parked after a 400) and `report-b` (pending). */
async function withParked (t: TestContext): Promise<TestServer> {
  const server = await startTestServer({ root, adminToken: ADMIN, meter: { minBytes: 0, apiKey: API_KEY } })
  t.after(() => server.close())
  server.collector.record({ uid: 'secret-uid-a', bytes: 5000, fileType: 'ts' })
  await server.collector.seal({ force: true })
  server.collector.record({ uid: 'secret-uid-b', bytes: 7000, fileType: 'ts' })
  await server.collector.seal({ force: true })
  const [a, b] = await server.store.outboxList()
  assert.ok(a !== undefined && b !== undefined)
  await server.store.outboxPark(a.reportId, 'report endpoint answered HTTP 400', Date.now(), { status: 400 })
  return Object.assign(server, { ids: { parked: a.reportId, pending: b.reportId } })
}

function idsOf (server: TestServer): { parked: string, pending: string } {
  return (server as TestServer & { ids: { parked: string, pending: string } }).ids
}

async function post (server: TestServer, body: string, headers: Record<string, string> = { 'content-type': 'application/json', ...auth }) {
  const res = await request(`${server.url}/api/outbox/retry`, { method: 'POST', headers, body })
  return { status: res.statusCode, body: await res.body.json() as Record<string, any> }
}

describe('GET /api/outbox', () => {
  it('lists pending and parked reports without bodies, with the outbox figures, behind the admin token', async (t) => {
    const server = await withParked(t)
    const { parked, pending } = idsOf(server)
    const none = await request(`${server.url}/api/outbox`)
    assert.equal(none.statusCode, 401)
    assert.equal((await none.body.json() as { error: { code: string } }).error.code, 'SM_ERR_UNAUTHORIZED')

    const res = await request(`${server.url}/api/outbox`, { headers: auth })
    assert.equal(res.statusCode, 200)
    assert.equal(res.headers['cache-control'], 'no-store')
    const text = await res.body.text()
    const doc = JSON.parse(text)
    assert.deepEqual(doc.stats, { pending: 1, pending_bytes: 7000, parked: 1, parked_bytes: 5000, oldest_age_seconds: doc.stats.oldest_age_seconds })
    assert.deepEqual(doc.pending.map((e: any) => [e.report_id, e.state, e.uids, e.bytes, e.attempts, e.rejections, e.last_status]), [[pending, 'pending', 1, 7000, 0, 0, null]])
    const [p] = doc.parked
    assert.deepEqual([p.report_id, p.state, p.uids, p.bytes, p.attempts, p.rejections, p.last_status, p.last_error],
      [parked, 'parked', 1, 5000, 1, 1, 400, 'report endpoint answered HTTP 400'])
    assert.equal(typeof p.parked_at, 'number')
    const stored = (await server.store.outbox()).find((e) => e.reportId === parked)
    assert.equal(p.body_bytes, Buffer.byteLength(stored?.body ?? ''))
    // No body (the uids are only in bodies), no secret.
    for (const hidden of ['secret-uid', API_KEY, ADMIN]) assert.ok(!text.includes(hidden), hidden)
  })

  it('nothing under /api/ is ever served by the media route, whatever the origin holds', async (t) => {
    const server = await startTestServer({ root })
    t.after(() => server.close())
    for (const [method, path, status] of [
      ['GET', '/api/outbox', 200], ['HEAD', '/api/outbox', 200], ['GET', '/%61pi/outbox', 200],
      ['GET', '/api/outbox.json', 404], ['GET', '/api/other', 404], ['HEAD', '/api/other', 404], ['GET', '/api/outbox/retry', 404]
    ] as const) {
      const res = await request(`${server.url}${path}?uid=viewer`, { method })
      const text = await res.body.text()
      assert.equal(res.statusCode, status, `${method} ${path}`)
      assert.ok(!text.includes('ORIGIN FILE'), `${method} ${path} served the origin's file`)
      if (method === 'GET') assert.match(String(res.headers['content-type']), /^application\/json/, `${method} ${path}`)
    }
    // Nothing was metered: the media route never saw these requests.
    await server.collector.flush()
    assert.deepEqual(await server.store.records(), [])
  })
})

describe('POST /api/outbox/retry', () => {
  it('puts a parked report back at the head, unchanged', async (t) => {
    const server = await withParked(t)
    const { parked, pending } = idsOf(server)
    const before = (await server.store.outbox()).find((e) => e.reportId === parked)
    assert.deepEqual(await post(server, JSON.stringify({ report_id: parked })), { status: 200, body: { retried: [parked] } })
    const [head, next] = await server.store.outbox()
    assert.deepEqual([head?.reportId, head?.body, head?.parkedAt, next?.reportId], [parked, before?.body, undefined, pending])
    assert.deepEqual((await server.collector.status()).outbox.parked, 0)
    // Again: it is pending now.
    const again = await post(server, JSON.stringify({ report_id: parked }))
    assert.deepEqual([again.status, again.body.error.code], [409, 'SM_ERR_REPORT_NOT_PARKED'])
  })

  it('{"all": true} puts every parked report back; none is fine', async (t) => {
    const server = await withParked(t)
    assert.deepEqual(await post(server, '{"all":true}'), { status: 200, body: { retried: [idsOf(server).parked] } })
    assert.deepEqual(await post(server, '{"all":true}'), { status: 200, body: { retried: [] } })
  })

  it('answers bad requests with a 4xx JSON error and changes nothing', async (t) => {
    const server = await withParked(t)
    const cases: Array<[string, Record<string, string> | undefined, number, string]> = [
      ['{}', undefined, 400, 'SM_ERR_BAD_REQUEST'],
      ['{"report_id": 5}', undefined, 400, 'SM_ERR_BAD_REQUEST'],
      ['{"report_id": ""}', undefined, 400, 'SM_ERR_BAD_REQUEST'],
      [JSON.stringify({ report_id: 'x'.repeat(300) }), undefined, 400, 'SM_ERR_BAD_REQUEST'],
      ['{"all": false}', undefined, 400, 'SM_ERR_BAD_REQUEST'],
      ['{"all": "true"}', undefined, 400, 'SM_ERR_BAD_REQUEST'],
      ['{"all": true, "report_id": "x"}', undefined, 400, 'SM_ERR_BAD_REQUEST'],
      ['[]', undefined, 400, 'SM_ERR_BAD_REQUEST'],
      ['"all"', undefined, 400, 'SM_ERR_BAD_REQUEST'],
      ['{"report_id":', undefined, 400, 'SM_ERR_BAD_REQUEST'],
      ['report_id=x', { 'content-type': 'application/x-www-form-urlencoded', ...auth }, 400, 'SM_ERR_BAD_REQUEST'],
      [JSON.stringify({ report_id: 'y'.repeat(5000) }), undefined, 400, 'SM_ERR_BAD_REQUEST'],
      ['{"report_id": "no-such-report"}', undefined, 404, 'SM_ERR_NOT_FOUND'],
      [JSON.stringify({ report_id: idsOf(server).pending }), undefined, 409, 'SM_ERR_REPORT_NOT_PARKED'],
      ['{"all": true}', { 'content-type': 'application/json' }, 401, 'SM_ERR_UNAUTHORIZED'],
      ['{"all": true}', { 'content-type': 'application/json', authorization: 'Bearer wrong' }, 401, 'SM_ERR_UNAUTHORIZED']
    ]
    for (const [body, headers, status, code] of cases) {
      const res = await post(server, body, headers)
      assert.equal(res.status, status, body.slice(0, 60))
      assert.equal(res.body.error?.code, code, body.slice(0, 60))
      assert.equal(typeof res.body.error?.message, 'string')
      assert.doesNotMatch(JSON.stringify(res.body), /\n\s+at |\.ts:\d/, 'no stack')
    }
    const stats = await server.store.outboxStats()
    assert.deepEqual([stats.pending, stats.parked], [1, 1])
  })
})
