import assert from 'node:assert/strict'
import { after, it } from 'node:test'
import { request } from 'undici'
import { startTestServer } from '../helpers/test-server.ts'

// /health needs no auth, so it answered anyone with the host's worker id
// (host name and pid), the version, the uptime and the live transfer count.
// docs/limits.md#the-admin-side: status, store and reporter state only, unless the request is
// admin-authorised.

const ADMIN = 'health-admin-token'
const servers: Array<{ close: () => Promise<void> }> = []
after(async () => { for (const s of servers) await s.close() })

async function health (url: string, headers: Record<string, string> = {}): Promise<Record<string, unknown>> {
  const res = await request(`${url}/health`, { headers })
  assert.equal(res.statusCode, 200)
  return await res.body.json() as Record<string, unknown>
}

it('with ADMIN_TOKEN: status, store and collector state to anyone; the details with the token', async () => {
  const server = await startTestServer({ root: '.', adminToken: ADMIN, workerId: 'host-1234' })
  servers.push(server)
  assert.deepEqual(await health(server.url), { status: 'ok', store: { ok: true, error: null, durable: false, durability: 'memory' }, collector: 'idle' })
  assert.deepEqual(await health(server.url, { authorization: 'Bearer wrong' }), { status: 'ok', store: { ok: true, error: null, durable: false, durability: 'memory' }, collector: 'idle' })
  const full = await health(server.url, { authorization: `Bearer ${ADMIN}` })
  assert.equal(full.worker_id, 'host-1234')
  assert.equal(typeof full.version, 'string')
  assert.equal(typeof full.uptime_seconds, 'number')
  assert.equal(full.active_transfers, 0)
  assert.deepEqual(full.store, { kind: 'memory', ok: true, error: null, durable: false, durability: 'memory' })
})

it('without ADMIN_TOKEN: a loopback peer is an admin and sees the details; a proxied one does not', async () => {
  const open = await startTestServer({ root: '.', workerId: 'host-1234' })
  servers.push(open)
  assert.equal((await health(open.url)).worker_id, 'host-1234')
  const proxied = await startTestServer({ root: '.', workerId: 'host-1234', trustedProxies: ['127.0.0.1'] })
  servers.push(proxied)
  assert.deepEqual(await health(proxied.url), { status: 'ok', store: { ok: true, error: null, durable: false, durability: 'memory' }, collector: 'idle' })
})
