import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { request } from 'undici'
import { HttpReportTransport, renderReports } from '../../src/meter/index.ts'
import type { OutboxEntry, UsageRecord } from '../../src/meter/index.ts'
import { startSink } from '../../src/sink/index.ts'
import type { RunningSink, SinkOptions } from '../../src/sink/index.ts'

async function sink (t: TestContext, options: SinkOptions = {}): Promise<RunningSink> {
  const s = await startSink({ port: 0, ...options })
  t.after(() => s.close())
  return s
}

interface Reply {
  status: number
  headers: Record<string, unknown>
  json: any
}

async function post (url: string, body: string, headers: Record<string, string> = {}): Promise<Reply> {
  const res = await request(url, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } })
  return { status: res.statusCode, headers: res.headers, json: await res.body.json() }
}

async function get (url: string): Promise<any> {
  const res = await request(url)
  assert.equal(res.statusCode, 200)
  return await res.body.json()
}

/** A report body in the shape streammeter sends (minimal but complete for the sink). */
function report (id: string, details: Array<[string, number]>): string {
  return JSON.stringify({
    report_id: id,
    timestamp: 1767225600,
    worker_id: 'test-1',
    traffic_details: details.map(([uid, bytes]) => ({ uid, total_bytes: bytes, request_count: 1 }))
  })
}

describe('sink', () => {
  it('stores each report once and sums totals exactly over unique reports', async (t) => {
    const s = await sink(t)
    const r1 = report('r-1', [['alice', 1048576], ['bob', 3]])
    const r2 = report('r-2', [['alice', 2_000_000_001], ['carol', 7]])
    const first = await post(`${s.url}/usage`, r1, { 'idempotency-key': 'r-1' })
    assert.equal(first.status, 200)
    assert.deepEqual(first.json, { ok: true, duplicate: false, report_id: 'r-1' })
    // A retry of the same report, byte for byte: success, not counted again.
    const again = await post(`${s.url}/usage`, r1, { 'idempotency-key': 'r-1' })
    assert.equal(again.status, 200)
    assert.deepEqual(again.json, { ok: true, duplicate: true, report_id: 'r-1' })
    // Any path; without an Idempotency-Key the report_id is the key.
    assert.equal((await post(`${s.url}/`, r2)).status, 200)
    assert.equal((await post(`${s.url}/other/path?x=1`, r2)).json.duplicate, true)

    assert.deepEqual(await get(`${s.url}/totals`), { alice: 1048576 + 2_000_000_001, bob: 3, carol: 7 })
    const list = await get(`${s.url}/reports`)
    assert.deepEqual(list.map((r: any) => r.report_id), ['r-1', 'r-2']) // newest last
    assert.equal(list[0].path, '/usage')
    assert.equal(list[1].path, '/')
    assert.deepEqual(list[0].body, JSON.parse(r1))
    assert.ok(!Number.isNaN(Date.parse(list[0].received_at)))
  })

  it('answers 422 when a known Idempotency-Key comes with a different body', async (t) => {
    const s = await sink(t)
    assert.equal((await post(s.url, report('r-1', [['a', 1]]))).status, 200)
    const changed = await post(s.url, report('r-1', [['a', 2]]))
    assert.equal(changed.status, 422)
    assert.equal(changed.json.error.code, 'SM_ERR_BAD_REQUEST')
    assert.deepEqual(await get(`${s.url}/totals`), { a: 1 })
  })

  it('checks the bearer key (401 otherwise) and stores nothing without it', async (t) => {
    const s = await sink(t, { apiKey: 'sink-key' })
    const body = report('r-1', [['a', 10]])
    for (const authorization of [undefined, 'Bearer wrong', 'Bearer sink-ke', 'Basic sink-key', 'Bearer sink-key extra', 'sink-key']) {
      const res = await post(s.url, body, authorization === undefined ? {} : { authorization })
      assert.equal(res.status, 401, String(authorization))
      assert.equal(res.json.error.code, 'SM_ERR_UNAUTHORIZED')
      assert.equal(res.headers['www-authenticate'], 'Bearer')
    }
    assert.deepEqual(await get(`${s.url}/totals`), {})
    assert.equal((await post(s.url, body, { authorization: 'bearer sink-key' })).status, 200)
    assert.deepEqual(await get(`${s.url}/totals`), { a: 10 })
  })

  it('answers 400 with a JSON error for a body it cannot use', async (t) => {
    const s = await sink(t)
    const bad: Array<[string, RegExp]> = [
      ['{"report_id": "x", ', /not valid JSON/],
      ['[]', /JSON object/],
      ['{"traffic_details": []}', /report_id/],
      ['{"report_id": "", "traffic_details": []}', /report_id/],
      ['{"report_id": "x"}', /traffic_details must be an array/],
      ['{"report_id": "x", "traffic_details": {}}', /traffic_details must be an array/],
      ['{"report_id": "x", "traffic_details": [{"total_bytes": 1}]}', /traffic_details\[0\]\.uid/],
      ['{"report_id": "x", "traffic_details": [{"uid": "a", "total_bytes": 1}, {"uid": "b", "total_bytes": -1}]}', /traffic_details\[1\]\.total_bytes/],
      ['{"report_id": "x", "traffic_details": [{"uid": "a", "total_bytes": 1.5}]}', /total_bytes/],
      ['{"report_id": "x", "traffic_details": [{"uid": "a", "total_bytes": "1"}]}', /total_bytes/],
      ['{"report_id": "x", "traffic_details": [null]}', /uid/]
    ]
    for (const [body, message] of bad) {
      const res = await post(s.url, body)
      assert.equal(res.status, 400, body)
      assert.equal(res.json.error.code, 'SM_ERR_BAD_REQUEST')
      assert.match(res.json.error.message, message)
    }
    const mismatch = await post(s.url, report('r-1', []), { 'idempotency-key': 'r-2' })
    assert.equal(mismatch.status, 400)
    assert.match(mismatch.json.error.message, /Idempotency-Key does not match/)
    const notJson = await request(s.url, { method: 'POST', body: 'x', headers: { 'content-type': 'text/plain' } })
    assert.equal(notJson.statusCode, 415)
    assert.equal(((await notJson.body.json()) as any).error.code, 'SM_ERR_BAD_REQUEST')
    assert.deepEqual(await get(`${s.url}/totals`), {})
    assert.deepEqual(await get(`${s.url}/reports`), [])
  })

  it('accepts a full-size report (5000 uids, over a megabyte)', async (t) => {
    const s = await sink(t)
    const records: UsageRecord[] = Array.from({ length: 5000 }, (_, i) => ({
      uid: `user-${String(i).padStart(6, '0')}-with-a-longish-identifier`,
      bytes: 1048576 + i,
      requests: 10,
      fileTypes: { ts: 1048576 + i - 1000, m3u8: 1000 },
      ips: ['203.0.113.9', '2001:db8::1'],
      sessions: ['s1'],
      startTime: Date.UTC(2026, 0, 1),
      lastActivity: Date.UTC(2026, 0, 1, 0, 5),
      qualified: true
    }))
    let n = 0
    const [rendered] = renderReports(records, Date.UTC(2026, 0, 1, 0, 5), {
      workerId: 'w', reportInterval: 300, minBytes: 1048576, maxUidsPerReport: 5000, newId: () => `id-${n++}`
    })
    assert.ok(rendered)
    assert.ok(rendered.body.length > 1024 * 1024, `${rendered.body.length} bytes`)
    assert.equal((await post(s.url, rendered.body)).status, 200)
    const totals = await get(`${s.url}/totals`)
    assert.equal(Object.keys(totals).length, 5000)
    assert.equal(totals['user-004999-with-a-longish-identifier'], 1048576 + 4999)
  })

  it('deduplicates what streammeter\'s own transport sends, retries included', async (t) => {
    const s = await sink(t, { apiKey: 'k' })
    const transport = new HttpReportTransport({ url: `${s.url}/usage`, apiKey: 'k', timeout: 5 })
    t.after(() => transport.close())
    const entry: OutboxEntry = { seq: 1, reportId: 'r-9', createdAt: 0, body: report('r-9', [['u', 42]]), uids: 1, bytes: 42, attempts: 0 }
    assert.deepEqual(await transport.send(entry, Date.now()), { ok: true, status: 200 })
    assert.deepEqual(await transport.send(entry, Date.now()), { ok: true, status: 200 })
    assert.deepEqual(await get(`${s.url}/totals`), { u: 42 })
  })

  it('keeps reports and deduplication across restarts with a database file', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sm-sink-'))
    t.after(() => rmSync(dir, { recursive: true, force: true }))
    const db = join(dir, 'sink.db')
    const body = report('r-1', [['a', 5]])
    const first = await startSink({ port: 0, db })
    assert.equal((await post(first.url, body)).json.duplicate, false)
    await first.close()
    await first.close() // idempotent
    const second = await sink(t, { db })
    assert.equal((await post(second.url, body)).json.duplicate, true)
    assert.equal((await post(second.url, report('r-2', [['a', 6]]))).json.duplicate, false)
    assert.deepEqual(await get(`${second.url}/totals`), { a: 11 })
  })

  it('reports each accepted POST to onReport and answers 404 JSON elsewhere', async (t) => {
    const events: unknown[] = []
    const s = await sink(t, { onReport: (e) => events.push(e) })
    await post(s.url, report('r-1', [['a', 5], ['b', 6]]))
    await post(s.url, report('r-1', [['a', 5], ['b', 6]]))
    assert.deepEqual(events, [
      { reportId: 'r-1', duplicate: false, uids: 2, bytes: 11 },
      { reportId: 'r-1', duplicate: true, uids: 2, bytes: 11 }
    ])
    const res = await request(`${s.url}/nothing`)
    assert.equal(res.statusCode, 404)
    assert.equal(((await res.body.json()) as any).error.code, 'SM_ERR_NOT_FOUND')
  })
})
