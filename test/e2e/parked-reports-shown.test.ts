/**
 * A parked report is counted and shown (docs/report-format.md#refused-reports): in `/traffic`'s outbox
 * section, as a `/metrics` gauge, and in the delivery panel of `/monitor`.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { request } from 'undici'
import { browserSuite, closeBrowser, openPage } from '../helpers/browser.ts'
import { startTestServer } from '../helpers/test-server.ts'
import type { TestServer } from '../helpers/test-server.ts'

const root = mkdtempSync(join(tmpdir(), 'sm-parked-shown-'))
after(() => rmSync(root, { recursive: true, force: true }))
after(closeBrowser)

/** A server with one pending report (7000 bytes) and one parked (5000 bytes, refused with 400). */
async function withParked (t: TestContext): Promise<TestServer> {
  const server = await startTestServer({ root, meter: { minBytes: 0 } })
  t.after(() => server.close())
  server.collector.record({ uid: 'a', bytes: 5000, fileType: 'ts' })
  await server.collector.seal({ force: true })
  server.collector.record({ uid: 'b', bytes: 7000, fileType: 'ts' })
  await server.collector.seal({ force: true })
  const [first] = await server.store.outboxList()
  assert.ok(first)
  assert.equal(await server.store.outboxPark(first.reportId, 'report endpoint answered HTTP 400', Date.now(), { status: 400 }), true)
  return server
}

describe('parked reports are shown', () => {
  it('/traffic, /metrics and the dashboard document count them and their bytes', async (t) => {
    const server = await withParked(t)
    const traffic = await (await request(`${server.url}/traffic`)).body.json() as Record<string, any>
    assert.deepEqual([traffic.outbox.pending, traffic.outbox.pending_bytes, traffic.outbox.parked, traffic.outbox.parked_bytes], [1, 7000, 1, 5000])
    assert.deepEqual([traffic.statistics.reports_parked, traffic.statistics.reports_pending], [1, 1])

    const metrics = await (await request(`${server.url}/metrics`)).body.text()
    assert.match(metrics, /^streammeter_outbox_parked_reports 1$/m)
    assert.match(metrics, /^streammeter_outbox_parked_bytes 5000$/m)
    assert.match(metrics, /^streammeter_outbox_pending_reports 1$/m)

    const snapshot = await (await request(`${server.url}/monitor/api/snapshot`)).body.json() as Record<string, any>
    assert.deepEqual([snapshot.delivery.parked, snapshot.delivery.parked_bytes], [1, 5000])
  })
})

describe('the dashboard\'s delivery panel in chromium', browserSuite(), () => {
  it('shows parked reports in red, and "none" once they are put back', async (t) => {
    const server = await withParked(t)
    const w = await openPage(t)
    await w.page.goto(`${server.url}/monitor`)
    await w.page.waitForSelector('#parked.bad', { timeout: 5000 })
    assert.equal(await w.page.textContent('#parked'), '1 report(s), 4.88 KiB: refused by the endpoint; see streammeter outbox list')
    await server.store.outboxRetry({ all: true })
    await w.page.waitForSelector('#parked.dim', { timeout: 5000 })
    assert.equal(await w.page.textContent('#parked'), 'none')
    assert.deepEqual(w.errors, [])
  })
})
