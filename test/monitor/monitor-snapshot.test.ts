import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { request } from 'undici'
import { FILE_TYPES } from '../../src/meter/index.ts'
import { MONITOR_CSP } from '../../src/server/monitor/monitor-routes.ts'
import { startTestServer } from '../helpers/test-server.ts'

const root = mkdtempSync(join(tmpdir(), 'sm-monitor-snapshot-'))
writeFileSync(join(root, 'seg.ts'), Buffer.alloc(300_000, 3))
after(() => rmSync(root, { recursive: true, force: true }))

const ADMIN = 'admin-token-snap'
const API_KEY = 'api-key-snap-42'
const SIGNING = 'signing-secret-snap'
const auth = { authorization: `Bearer ${ADMIN}` }

describe('/monitor/api/snapshot and the page files', () => {
  it('the document has every panel\'s figures and no secret', async (t) => {
    const server = await startTestServer({
      root,
      adminToken: ADMIN,
      meter: { minBytes: 1000, reportUrl: 'https://user:pw@billing.example/usage?key=zzz', apiKey: API_KEY }
    })
    t.after(() => server.close())
    const seg = await request(`${server.url}/seg.ts?uid=viewer`)
    assert.equal((await seg.body.arrayBuffer()).byteLength, 300_000)
    await server.app.idle()
    await server.collector.flush()
    server.app.monitor.history.sample()

    const res = await request(`${server.url}/monitor/api/snapshot`, { headers: auth })
    assert.equal(res.statusCode, 200)
    assert.match(String(res.headers['content-type']), /^application\/json/)
    assert.equal(res.headers['cache-control'], 'no-store')
    const text = await res.body.text()
    for (const secret of [ADMIN, API_KEY, 'pw@', 'zzz']) assert.ok(!text.includes(secret), `shows ${secret}`)
    const doc = JSON.parse(text)
    assert.equal(doc.worker_id, 'test')
    assert.equal(doc.state, 'running')
    assert.deepEqual(Object.keys(doc.throughput.requests_per_second), [...FILE_TYPES])
    assert.equal(doc.throughput.interval_seconds, 1)
    assert.ok(doc.throughput.t.length >= 1)
    assert.equal(doc.throughput.bytes_per_second.length, doc.throughput.t.length)
    assert.ok(doc.throughput.bytes_per_second.at(-1) > 0, 'the response is in the last sample')
    assert.ok(doc.throughput.requests_per_second.ts.at(-1) > 0)
    assert.deepEqual(doc.active_transfers, { visible: true, count: 0, transfers: [] })
    assert.equal(doc.window.qualified_uids, 1)
    assert.equal(doc.window.pending_accumulator_uids, 0)
    assert.equal(doc.window.total_bytes, 300_000)
    assert.equal(doc.window.bytes_discarded, 0)
    assert.equal(doc.window.min_bytes_threshold, 1000)
    assert.equal(typeof doc.window.next_report_in_seconds, 'number')
    assert.deepEqual(doc.window.top_uids.map((u: { uid: string, bytes: number, requests: number }) => [u.uid, u.bytes, u.requests]), [['viewer', 300_000, 1]])
    assert.deepEqual(doc.window.top_uids[0].file_types, { ts: 300_000 })
    assert.equal(doc.delivery.report_url, 'https://billing.example/usage?…')
    assert.equal(doc.delivery.api_key_configured, true)
    assert.equal(doc.delivery.pending, 0)
    assert.equal(doc.delivery.last_success_at, null)
    assert.equal(doc.delivery.reports_failed, 0)
    assert.equal(doc.store.kind, 'memory')
    assert.equal(doc.store.ok, true)
    assert.equal(doc.store.available, true)
    assert.equal(doc.store.is_reporter, false, 'the collector was never started, so it holds no lease')
    assert.equal(typeof doc.store.latency_ms, 'number')
  })

  it('the page and its files: security headers, content types, validators', async (t) => {
    const server = await startTestServer({ root })
    t.after(() => server.close())
    const page = await request(`${server.url}/monitor`)
    const html = await page.body.text()
    assert.equal(page.statusCode, 200)
    assert.equal(page.headers['content-type'], 'text/html; charset=utf-8')
    assert.equal(page.headers['content-security-policy'], MONITOR_CSP)
    assert.match(MONITOR_CSP, /default-src 'self'/)
    assert.match(MONITOR_CSP, /frame-ancestors 'none'/)
    assert.doesNotMatch(MONITOR_CSP, /unsafe-inline|unsafe-eval/)
    assert.equal(page.headers['x-content-type-options'], 'nosniff')
    assert.equal(page.headers['referrer-policy'], 'no-referrer')
    // No inline script, nothing from another host.
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/)
    assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//)
    for (const [name, type] of [['monitor.js', 'text/javascript'], ['monitor.css', 'text/css'], ['uPlot.esm.js', 'text/javascript'], ['uPlot.min.css', 'text/css'], ['hls.mjs', 'text/javascript'], ['favicon.svg', 'image/svg+xml']] as const) {
      const res = await request(`${server.url}/monitor/assets/${name}`)
      const body = await res.body.arrayBuffer()
      assert.equal(res.statusCode, 200, name)
      assert.ok(String(res.headers['content-type']).startsWith(type), `${name}: ${res.headers['content-type']}`)
      assert.ok(body.byteLength > 100, name)
      assert.match(String(res.headers['cache-control']), /^private, /)
      assert.equal(res.headers['x-content-type-options'], 'nosniff')
      const again = await request(`${server.url}/monitor/assets/${name}`, { headers: { 'if-none-match': String(res.headers.etag) } })
      assert.equal(again.statusCode, 304, name)
      await again.body.dump()
    }
    const missing = await request(`${server.url}/monitor/assets/monitor.html`)
    assert.equal(missing.statusCode, 404)
    await missing.body.dump()
  })

  it('/monitor/api/demo: a signed URL for the demo uid that plays; unsigned without a secret; a reason when the origin has no demo', async (t) => {
    const demoRoot = join(import.meta.dirname, '..', '..', 'examples', 'media')
    const signed = await startTestServer({ root: demoRoot, signingSecret: SIGNING })
    t.after(() => signed.close())
    const before = Math.floor(Date.now() / 1000)
    const link = await (await request(`${signed.url}/monitor/api/demo`)).body.json() as Record<string, any>
    assert.equal(link.available, true)
    assert.equal(link.uid, 'demo')
    assert.match(link.url, /^\/master\.m3u8\?uid=demo&expires=\d+&token=[0-9a-f]{64}$/)
    assert.ok(link.expires_at >= before + 600 && link.expires_at <= before + 601)
    assert.ok(!JSON.stringify(link).includes(SIGNING))
    const playlist = await request(`${signed.url}${link.url}`)
    assert.equal(playlist.statusCode, 200)
    // A child playlist carries the master's scope (the root, here) down: docs/access.md.
    assert.match(await playlist.body.text(), /plain\/index\.m3u8\?uid=demo&expires=\d+&scope=\/&token=/)

    const open = await startTestServer({ root: demoRoot })
    t.after(() => open.close())
    const unsigned = await (await request(`${open.url}/monitor/api/demo`)).body.json() as Record<string, any>
    assert.deepEqual(unsigned, { uid: 'demo', url: '/master.m3u8?uid=demo', expires_at: null, available: true, reason: null })

    const other = await startTestServer({ root })
    t.after(() => other.close())
    const none = await (await request(`${other.url}/monitor/api/demo`)).body.json() as Record<string, any>
    assert.equal(none.available, false)
    assert.equal(none.url, null)
    assert.match(none.reason, /has no \/master\.m3u8/)
  })
})
