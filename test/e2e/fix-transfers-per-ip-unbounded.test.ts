import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import type { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, it } from 'node:test'
import { request } from 'undici'
import { TransfersPerIp } from '../../src/server/media/transfers-per-ip.ts'
import { meteredBytes, startTestServer } from '../helpers/test-server.ts'
import { waitFor } from '../helpers/wait.ts'

// One client address could open any number of media responses at once.
// docs/limits.md#requests: at most MAX_TRANSFERS_PER_IP (default 64) per client IP, the
// IP resolved through TRUSTED_PROXIES; beyond, a JSON 429 with a stable
// code, counted in /metrics.

const root = mkdtempSync(join(tmpdir(), 'sm-per-ip-'))
writeFileSync(join(root, 'big.mp4'), Buffer.alloc(16 * 1024 * 1024, 1))
writeFileSync(join(root, 'a.ts'), Buffer.alloc(1000, 2))
after(() => rmSync(root, { recursive: true, force: true }))

it('the counter: a Map entry per address with requests in flight, gone at zero', () => {
  const perIp = new TransfersPerIp(2)
  assert.equal(perIp.acquire('10.0.0.1'), true)
  assert.equal(perIp.acquire('10.0.0.1'), true)
  assert.equal(perIp.acquire('10.0.0.1'), false)
  assert.equal(perIp.acquire('10.0.0.2'), true)
  assert.equal(perIp.inFlight('10.0.0.1'), 2)
  perIp.release('10.0.0.1')
  assert.equal(perIp.acquire('10.0.0.1'), true)
  perIp.release('10.0.0.1')
  perIp.release('10.0.0.1')
  perIp.release('10.0.0.2')
  assert.equal(perIp.addresses, 0)
})

it('the request over MAX_TRANSFERS_PER_IP from one client IP is a JSON 429; other IPs are served; the slot frees when one ends', async (t) => {
  const server = await startTestServer({ root, maxTransfersPerIp: 3, trustedProxies: ['127.0.0.1'], adminToken: 'tok' })
  t.after(() => server.close())
  // Three stalled downloads from 198.51.100.7 behind the trusted proxy.
  const held: Socket[] = []
  t.after(() => { for (const s of held) s.destroy() })
  for (let i = 0; i < 3; i++) {
    const s = connect(server.port, '127.0.0.1')
    s.pause()
    s.on('error', () => {})
    s.write(`GET /big.mp4?uid=held${i} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.7\r\n\r\n`)
    held.push(s)
  }
  await waitFor(() => server.app.transfers.size === 3, 5000, 'three downloads in flight')

  const fourth = await request(`${server.url}/a.ts?uid=over`, { headers: { 'x-forwarded-for': '198.51.100.7' } })
  assert.equal(fourth.statusCode, 429)
  assert.equal(fourth.headers['content-type'], 'application/json; charset=utf-8')
  assert.deepEqual(await fourth.body.json(), {
    error: { code: 'SM_ERR_TOO_MANY_TRANSFERS', message: 'too many concurrent media requests from this address (at most 3)' }
  })
  // A forged X-Forwarded-For entry to the left of the real client changes nothing.
  const forged = await request(`${server.url}/a.ts?uid=over`, { headers: { 'x-forwarded-for': '203.0.113.9, 198.51.100.7' } })
  await forged.body.dump()
  assert.equal(forged.statusCode, 429)

  const other = await request(`${server.url}/a.ts?uid=other`, { headers: { 'x-forwarded-for': '198.51.100.8' } })
  assert.equal((await other.body.arrayBuffer()).byteLength, 1000)

  held[0]!.destroy()
  await waitFor(() => server.app.transfers.size === 2, 5000, 'one download ended')
  const again = await request(`${server.url}/a.ts?uid=again`, { headers: { 'x-forwarded-for': '198.51.100.7' } })
  assert.equal((await again.body.arrayBuffer()).byteLength, 1000)

  const metrics = await (await request(`${server.url}/metrics`, { headers: { authorization: 'Bearer tok' } })).body.text()
  assert.match(metrics, /^streammeter_limit_hits_total\{limit="max_transfers_per_ip"\} 2$/m)
  assert.match(metrics, /^streammeter_requests_total\{method="GET",status="429",file_type="ts"\} 2$/m)
  const metered = await meteredBytes(server)
  assert.equal(metered.get('over'), undefined)
  assert.equal(metered.get('again'), 1000)
})
