import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { request } from 'undici'
import { ClientIpResolver } from '../../src/server/access/client-ip.ts'
import { startCliServer } from '../helpers/cli-server.ts'
import { startTestServer } from '../helpers/test-server.ts'
import { waitFor } from '../helpers/wait.ts'

// Behind a reverse proxy on the same host every client is a loopback peer,
// so without ADMIN_TOKEN "loopback only" let anyone read /active-transfers
// (uids, IPs). docs/limits.md#the-admin-side: when TRUSTED_PROXIES covers loopback, admin
// endpoints refuse every request until ADMIN_TOKEN is set, and the start-up
// log says so.

const ADMIN_PATHS = ['/traffic', '/active-transfers', '/metrics', '/monitor', '/monitor/api/snapshot']

describe('admin endpoints behind a local reverse proxy', () => {
  it('TRUSTED_PROXIES covering loopback and no ADMIN_TOKEN: every admin request is a JSON 403', async (t) => {
    const server = await startTestServer({ root: '.', trustedProxies: ['10.0.0.0/8', '127.0.0.1'] })
    t.after(() => server.close())
    assert.equal(server.app.adminAccess, 'closed')
    for (const path of ADMIN_PATHS) {
      for (const headers of [{}, { 'x-forwarded-for': '127.0.0.1' }]) {
        const res = await request(`${server.url}${path}`, { headers })
        const body = await res.body.json() as { error: { code: string, message: string } }
        assert.equal(res.statusCode, 403, path)
        assert.equal(body.error.code, 'SM_ERR_FORBIDDEN')
        assert.match(body.error.message, /ADMIN_TOKEN/)
      }
    }
  })

  it('with ADMIN_TOKEN the token opens them; a proxy list without loopback keeps loopback access', async (t) => {
    const withToken = await startTestServer({ root: '.', trustedProxies: ['127.0.0.0/8'], adminToken: 'tok-1' })
    t.after(() => withToken.close())
    assert.equal(withToken.app.adminAccess, 'token')
    for (const path of ADMIN_PATHS) {
      const res = await request(`${withToken.url}${path}`, { headers: { authorization: 'Bearer tok-1' } })
      await res.body.dump()
      assert.equal(res.statusCode, 200, path)
    }
    const remoteProxy = await startTestServer({ root: '.', trustedProxies: ['10.0.0.0/8'] })
    t.after(() => remoteProxy.close())
    assert.equal(remoteProxy.app.adminAccess, 'loopback')
    const res = await request(`${remoteProxy.url}/active-transfers`)
    await res.body.dump()
    assert.equal(res.statusCode, 200)
  })

  it('"covers loopback": any entry that holds or lies inside 127.0.0.0/8 or ::1, in any spelling', () => {
    const covers = ['127.0.0.1', '127.0.0.0/8', '127.0.0.2', '127.1.2.0/24', '::1', '::1/128', '0.0.0.0/0', '::/0',
      '::ffff:127.0.0.1', '::ffff:0:0/96', '::ffff:7f00:0/104', '64.0.0.0/2', '::/127']
    const not = ['10.0.0.0/8', '128.0.0.0/1', '126.255.255.255', 'fd00::/8', '::2', '192.0.2.7', '::ffff:10.0.0.0/104']
    for (const entry of covers) assert.equal(new ClientIpResolver([entry]).coversLoopback, true, entry)
    for (const entry of not) assert.equal(new ClientIpResolver([entry]).coversLoopback, false, entry)
    assert.equal(new ClientIpResolver([]).coversLoopback, false)
  })

  it('the start-up log says so in one line', async (t) => {
    const server = await startCliServer({ STORE_URL: 'memory:', TRUSTED_PROXIES: '::1,10.0.0.0/8' })
    t.after(async () => {
      server.child.kill('SIGKILL')
      await server.exited
    })
    // pino writes asynchronously: the line may follow the "listening" one.
    await waitFor(() => server.output().includes('admin endpoints refuse'), 5000, 'the warning')
    const lines = server.output().split('\n').filter((l) => l.includes('admin endpoints refuse every request'))
    assert.equal(lines.length, 1, server.output())
    assert.match(lines[0]!, /TRUSTED_PROXIES covers loopback.*ADMIN_TOKEN/)
  })
})
