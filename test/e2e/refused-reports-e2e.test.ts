/**
 * Refused reports end to end (docs/report-format.md#refused-reports): `streammeter serve` as its own
 * process with a SQLite store, real clients through the proxy, a real
 * report receiver that refuses, and the operator's `streammeter outbox`
 * and admin API.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { request } from 'undici'
import { main } from '../../src/cli/main.ts'
import { startCliServer } from '../helpers/cli-server.ts'
import type { CliServer } from '../helpers/cli-server.ts'
import { Receiver } from '../helpers/receiver.ts'
import type { ReceivedRequest } from '../helpers/receiver.ts'
import { waitFor } from '../helpers/wait.ts'

const ADMIN = 'admin-token-e2e'
const SEGMENT = 12_345 // bytes

interface Setup { server: CliServer, receiver: Receiver, storeUrl: string }

async function setup (t: TestContext, env: Record<string, string>): Promise<Setup> {
  const dir = mkdtempSync(join(tmpdir(), 'sm-refused-e2e-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'seg.ts'), Buffer.alloc(SEGMENT, 7))
  const receiver = await Receiver.start()
  t.after(() => receiver.close())
  const storeUrl = `sqlite:${join(dir, 'meter.db')}`
  const server = await startCliServer({
    ORIGIN_ROOT: dir,
    STORE_URL: storeUrl,
    ADMIN_TOKEN: ADMIN,
    TRAFFIC_REPORT_URL: receiver.url,
    TRAFFIC_MIN_BYTES: '0',
    TRAFFIC_REPORT_INTERVAL: '1',
    TRAFFIC_FLUSH_INTERVAL: '0.1',
    ...env
  })
  t.after(() => { server.child.kill('SIGKILL') })
  return { server, receiver, storeUrl }
}

async function fetchSegment (server: CliServer, uid: string): Promise<void> {
  const res = await request(`${server.url}/seg.ts?uid=${encodeURIComponent(uid)}`)
  assert.equal((await res.body.arrayBuffer()).byteLength, SEGMENT)
}

async function traffic (server: CliServer): Promise<Record<string, any>> {
  return await (await request(`${server.url}/traffic`, { headers: { authorization: `Bearer ${ADMIN}` } })).body.json() as Record<string, any>
}

async function stop (server: CliServer): Promise<void> {
  server.child.kill('SIGTERM')
  assert.equal(await server.exited, 0, server.output())
}

const keyOf = (r: ReceivedRequest): string => String(r.headers['idempotency-key'])
const uidsIn = (r: ReceivedRequest): string[] => (JSON.parse(r.body) as { traffic_details: Array<{ uid: string }> }).traffic_details.map((d) => d.uid)

describe('refused reports, end to end', () => {
  it('a receiver that answers 413 over 4 KiB gets every uid\'s exact bytes once, in parts that fit', async (t) => {
    const limit = 4096
    const { server, receiver } = await setup(t, { TRAFFIC_REPORT_INTERVAL: '2' })
    receiver.fallback = (req) => Buffer.byteLength(req.body) > limit ? 413 : 200
    const uids = Array.from({ length: 120 }, () => randomUUID())
    for (let i = 0; i < uids.length; i += 20) await Promise.all(uids.slice(i, i + 20).map((uid) => fetchSegment(server, uid)))
    await waitFor(() => receiver.totals().size === uids.length, 15_000, 'every uid reported')
    await waitFor(async () => (await traffic(server)).outbox.pending === 0, 5000, 'outbox empty')
    assert.deepEqual(receiver.totals(), new Map(uids.map((uid) => [uid, SEGMENT])))
    assert.ok(receiver.requests.some((r) => r.status === 413), 'the receiver refused at least one report')
    for (const r of receiver.accepted) assert.ok(Buffer.byteLength(r.body) <= limit)
    const reported = receiver.reports.flatMap((r) => r.traffic_details.map((d: { uid: string }) => d.uid))
    assert.equal(reported.length, uids.length, 'each uid in exactly one accepted report')
    const status = await traffic(server)
    assert.equal(status.statistics.total_bytes_reported, uids.length * SEGMENT)
    assert.equal(status.outbox.parked, 0)
    await stop(server)
  })

  it('400 forever: parked after TRAFFIC_REPORT_MAX_REJECTIONS, the next window delivered, then outbox retry (CLI and admin API) delivers it byte for byte', async (t) => {
    const { server, receiver, storeUrl } = await setup(t, { TRAFFIC_REPORT_MAX_REJECTIONS: '2' })
    const refused = new Set(['alice', 'carol'])
    receiver.fallback = (req) => uidsIn(req).some((uid) => refused.has(uid)) ? 400 : 200

    await fetchSegment(server, 'alice')
    await waitFor(async () => (await traffic(server)).outbox.parked === 1, 10_000, 'alice\'s report parked')
    await fetchSegment(server, 'bob')
    await waitFor(() => receiver.totals().has('bob'), 10_000, 'bob\'s report delivered behind the parked one')
    const aliceRefusals = receiver.requests.filter((r) => uidsIn(r).includes('alice'))
    assert.deepEqual(aliceRefusals.map((r) => r.status), [400, 400])
    const aliceId = keyOf(aliceRefusals[0] as ReceivedRequest)
    assert.equal(keyOf(aliceRefusals[1] as ReceivedRequest), aliceId)

    await fetchSegment(server, 'carol')
    await waitFor(async () => (await traffic(server)).outbox.parked === 2, 10_000, 'carol\'s report parked')
    const carolRefused = receiver.requests.find((r) => uidsIn(r).includes('carol')) as ReceivedRequest
    assert.deepEqual(Object.fromEntries(receiver.totals()), { bob: SEGMENT })
    const status = await traffic(server)
    assert.deepEqual([status.outbox.parked, status.outbox.parked_bytes, status.statistics.reports_parked], [2, 2 * SEGMENT, 2])

    // The receiver is fixed. The CLI puts alice's report back, beside the running server.
    refused.clear()
    let out = ''
    const code = await main(['outbox', 'retry', aliceId], { STORE_URL: storeUrl }, { stdout: { write: (s: string) => { out += s } }, stderr: { write: (s: string) => { out += s } } })
    assert.equal(code, 0, out)
    await waitFor(() => receiver.totals().has('alice'), 10_000, 'alice delivered after outbox retry')
    const aliceAccepted = receiver.accepted.filter((r) => keyOf(r) === aliceId)
    assert.equal(aliceAccepted.length, 1)
    assert.equal(aliceAccepted[0]?.body, aliceRefusals[0]?.body, 'byte-identical body')

    // And the admin API puts carol's back.
    const res = await request(`${server.url}/api/outbox/retry`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ report_id: keyOf(carolRefused) })
    })
    assert.deepEqual([res.statusCode, await res.body.json()], [200, { retried: [keyOf(carolRefused)] }])
    await waitFor(() => receiver.totals().has('carol'), 10_000, 'carol delivered after POST /api/outbox/retry')
    assert.equal(receiver.accepted.find((r) => keyOf(r) === keyOf(carolRefused))?.body, carolRefused.body)

    assert.deepEqual(Object.fromEntries(receiver.totals()), { alice: SEGMENT, bob: SEGMENT, carol: SEGMENT })
    assert.equal(new Set(receiver.accepted.map(keyOf)).size, receiver.accepted.length, 'each report accepted once')
    const after = await traffic(server)
    assert.deepEqual([after.outbox.pending, after.outbox.parked, after.statistics.total_bytes_reported], [0, 0, 3 * SEGMENT])
    await stop(server)
  })
})
