import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { request } from 'undici'
import { startTestServer } from '../helpers/test-server.ts'

const root = mkdtempSync(join(tmpdir(), 'sm-admin-'))
writeFileSync(join(root, 'health'), 'a file named like an admin path')
writeFileSync(join(root, 'seg.ts'), Buffer.alloc(300_000, 3))
after(() => rmSync(root, { recursive: true, force: true }))

const ADMIN = 'admin-token-xyz'
const API_KEY = 'api-key-secret-42'
const SIGNING = 'signing-secret-77'

describe('admin endpoints', () => {
  it('need the bearer token; /health needs none; secrets are never shown', async (t) => {
    const server = await startTestServer({
      root,
      adminToken: ADMIN,
      signingSecret: SIGNING,
      meter: { reportUrl: 'https://user:pw@billing.example/usage?key=zzz', apiKey: API_KEY }
    })
    t.after(() => server.close())
    for (const path of ['/traffic', '/active-transfers', '/metrics', '/monitor', '/monitor/api/snapshot']) {
      const none = await request(`${server.url}${path}`)
      assert.equal(none.statusCode, 401, path)
      assert.equal(JSON.parse(await none.body.text()).error.code, 'SM_ERR_UNAUTHORIZED')
      const wrong = await request(`${server.url}${path}`, { headers: { authorization: 'Bearer nope' } })
      assert.equal(wrong.statusCode, 401)
      await wrong.body.dump()
      const ok = await request(`${server.url}${path}`, { headers: { authorization: `Bearer ${ADMIN}` } })
      assert.equal(ok.statusCode, 200, path)
      const text = await ok.body.text()
      for (const secret of [ADMIN, API_KEY, SIGNING, 'pw@', 'zzz']) assert.ok(!text.includes(secret), `${path} shows ${secret}`)
    }
    const health = await request(`${server.url}/health`)
    assert.equal(health.statusCode, 200)
    const h = await health.body.json() as { status: string, store: { kind?: string } }
    assert.equal(h.status, 'ok')
    assert.equal(h.store.kind, undefined, 'the store kind is for admins')
    const admin = await request(`${server.url}/health`, { headers: { authorization: `Bearer ${ADMIN}` } })
    assert.equal((await admin.body.json() as { store: { kind: string } }).store.kind, 'memory')
  })

  it('/traffic has the original shape plus the outbox; /metrics is Prometheus text', async (t) => {
    const server = await startTestServer({ root, meter: { minBytes: 1000 } })
    t.after(() => server.close())
    const seg = await request(`${server.url}/seg.ts?uid=viewer`)
    assert.equal((await seg.body.arrayBuffer()).byteLength, 300_000)
    await server.app.idle()
    await server.collector.flush()
    const traffic = await (await request(`${server.url}/traffic`)).body.json() as Record<string, any>
    for (const key of ['worker_id', 'running', 'config', 'current_state', 'statistics', 'outbox', 'current_traffic_summary']) assert.ok(key in traffic, key)
    assert.deepEqual(Object.keys(traffic.config).filter((k) => ['min_threshold_mb', 'report_interval_seconds', 'report_url', 'api_key_configured'].includes(k)).length, 4)
    for (const k of ['qualified_uids', 'pending_accumulator_uids', 'next_report_in_seconds']) assert.ok(k in traffic.current_state, k)
    for (const k of ['total_recorded_uids', 'total_reports_sent', 'total_bytes_reported', 'current_qualified_uids', 'reports_failed', 'accumulator_cleanups']) assert.equal(typeof traffic.statistics[k], 'number', k)
    assert.equal(traffic.current_state.qualified_uids, 1)
    assert.equal(traffic.current_traffic_summary.top_uids[0].uid, 'viewer')
    assert.equal(traffic.current_traffic_summary.top_uids[0].bytes, 300_000)

    const metrics = await (await request(`${server.url}/metrics`)).body.text()
    assert.match(metrics, /^streammeter_requests_total\{method="GET",status="200",file_type="ts"\} 1$/m)
    assert.match(metrics, /^streammeter_bytes_sent_total\{file_type="ts"\} 300000$/m)
    assert.match(metrics, /^streammeter_active_transfers 0$/m)
    assert.match(metrics, /^streammeter_outbox_pending_reports 0$/m)
    assert.match(metrics, /^streammeter_store_operation_seconds_count\{operation="flush"\} \d+$/m)
  })

  it('admin paths are never proxied, even when the origin has such a file', async (t) => {
    const server = await startTestServer({ root })
    t.after(() => server.close())
    const res = await request(`${server.url}/health`)
    const text = await res.body.text()
    assert.doesNotMatch(text, /a file named like an admin path/)
  })
})
