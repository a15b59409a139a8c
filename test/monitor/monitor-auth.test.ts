import assert from 'node:assert/strict'
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { request } from 'undici'
import { startTestServer } from '../helpers/test-server.ts'

const root = mkdtempSync(join(tmpdir(), 'sm-monitor-auth-'))
mkdirSync(join(root, 'monitor'))
writeFileSync(join(root, 'monitor', 'x.ts'), 'a file named like a dashboard path')
writeFileSync(join(root, 'monitor', 'assets'), 'a file named like a dashboard path')
after(() => rmSync(root, { recursive: true, force: true }))

const ADMIN = 'admin-token-monitor'
const PATHS = ['/monitor', '/monitor/', '/monitor/assets/monitor.js', '/monitor/assets/hls.mjs', '/monitor/api/snapshot', '/monitor/api/demo', '/monitor/api/events', '/monitor/nope']
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

describe('/monitor is behind the admin guard (docs/endpoints.md#authentication), with HTTP Basic for browsers', () => {
  it('with ADMIN_TOKEN: 401 with a Basic challenge; Bearer or Basic with the token as password lets in', async (t) => {
    const server = await startTestServer({ root, adminToken: ADMIN })
    t.after(() => server.close())
    for (const path of PATHS) {
      for (const authorization of [undefined, 'Bearer nope', basic('admin', 'nope'), basic(ADMIN, ''), 'Basic !!!', `Bearer ${ADMIN}x`]) {
        const res = await request(`${server.url}${path}`, { headers: authorization === undefined ? {} : { authorization } })
        assert.equal(res.statusCode, 401, `${path} with ${authorization}`)
        assert.equal(res.headers['www-authenticate'], 'Basic realm="streammeter", charset="UTF-8"')
        assert.equal(res.headers['x-content-type-options'], 'nosniff')
        const text = await res.body.text()
        assert.equal(JSON.parse(text).error.code, 'SM_ERR_UNAUTHORIZED')
        assert.ok(!text.includes(ADMIN))
      }
    }
    for (const authorization of [`Bearer ${ADMIN}`, basic('anyone', ADMIN), basic('', ADMIN), `basic ${Buffer.from(`x:${ADMIN}`).toString('base64')}`]) {
      for (const path of PATHS.filter((p) => !p.endsWith('/events') && p !== '/monitor/nope')) {
        const res = await request(`${server.url}${path}`, { headers: { authorization } })
        assert.equal(res.statusCode, 200, `${path} with ${authorization}`)
        await res.body.dump()
      }
    }
    // The other admin endpoints keep their Bearer-only contract.
    const traffic = await request(`${server.url}/traffic`, { headers: { authorization: basic('x', ADMIN) } })
    assert.equal(traffic.statusCode, 401)
    assert.equal(traffic.headers['www-authenticate'], 'Bearer')
    await traffic.body.dump()
  })

  it('without ADMIN_TOKEN: loopback clients only', async (t) => {
    const server = await startTestServer({ root })
    t.after(() => server.close())
    const local = await request(`${server.url}/monitor/api/snapshot`)
    assert.equal(local.statusCode, 200)
    await local.body.dump()
    for (const path of PATHS) {
      // inject() sets the socket's remote address: the guard's logic only.
      const remote = await server.app.fastify.inject({ method: 'GET', url: path, remoteAddress: '192.0.2.7' })
      assert.equal(remote.statusCode, 403, path)
      assert.equal(remote.json().error.code, 'SM_ERR_FORBIDDEN')
    }
  })

  it('nothing under /monitor reaches the media route, even when the origin has such a file; neither does HEAD of an admin path', async (t) => {
    const server = await startTestServer({ root })
    t.after(() => server.close())
    for (const path of ['/monitor/x.ts', '/monitor/assets', '/monitor/assets/', '/monitor/assets/x.ts?uid=u', '/monitor/api/x']) {
      const res = await request(`${server.url}${path}`)
      const text = await res.body.text()
      assert.equal(res.statusCode, 404, path)
      assert.doesNotMatch(text, /dashboard path/, path)
      assert.equal(JSON.parse(text).error.code, 'SM_ERR_NOT_FOUND')
    }
    for (const path of ['/health', '/traffic', '/metrics', '/active-transfers', '/monitor', '/monitor/x.ts']) {
      const res = await request(`${server.url}${path}`, { method: 'HEAD' })
      await res.body.dump()
      assert.notEqual(res.headers['accept-ranges'], 'bytes', `HEAD ${path} was proxied`)
      assert.ok(res.statusCode === 200 || res.statusCode === 404, `HEAD ${path}: ${res.statusCode}`)
    }
    const head = await request(`${server.url}/monitor/x.ts`, { method: 'HEAD' })
    await head.body.dump()
    assert.equal(head.statusCode, 404)
  })
})
