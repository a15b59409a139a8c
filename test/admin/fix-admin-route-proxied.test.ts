import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { request } from 'undici'
import { MemoryStore } from '../../src/store/index.ts'
import { policyOf, resolveMeterOptions } from '../../src/meter/index.ts'
import { buildApp } from '../../src/server/app.ts'
import type { App } from '../../src/server/app.ts'
import { HttpOrigin } from '../../src/server/origin/http-origin.ts'
import { OwnPaths } from '../../src/server/media/own-paths.ts'
import { startRecordingOrigin } from '../helpers/recording-origin.ts'
import type { RecordingOrigin } from '../helpers/recording-origin.ts'

/**
 * The paths of every GET route Fastify holds, read from its own route tree
 * (`printRoutes`), not from the set the app builds: `/*` (the media route)
 * left out. A `:param` becomes `x`, a `*` becomes `any/thing`.
 */
function registeredGetPaths (app: App): string[] {
  const paths: string[] = []
  const stack: string[] = []
  for (const line of app.fastify.printRoutes({ commonPrefix: false }).split('\n')) {
    const m = /^([│ ]*)[├└]── (\S*) \(([^)]*)\)/.exec(line) ?? /^([│ ]*)[├└]── (\S*)$/.exec(line)
    if (m === null) continue
    const depth = (m[1] ?? '').length / 4
    stack.length = depth
    const full = stack.join('') + (m[2] ?? '')
    stack.push(m[2] ?? '')
    if (m[3]?.includes('GET') === true && full !== '*') paths.push(full.replace(/:[^/]+/g, 'x').replace(/\*$/, 'any/thing'))
  }
  return paths
}

async function appOnRecordingOrigin (t: TestContext, extra?: (app: App) => void): Promise<{ app: App, url: string, origin: RecordingOrigin }> {
  const origin = await startRecordingOrigin((_req, res) => { res.end('a file of the origin') })
  t.after(() => origin.close())
  const store = new MemoryStore(policyOf(resolveMeterOptions({ workerId: 'test' })))
  const app = buildApp({ origin: new HttpOrigin({ baseUrl: origin.url, timeout: 5 }), store, collector: () => undefined })
  extra?.(app)
  await app.fastify.listen({ port: 0, host: '127.0.0.1' })
  t.after(() => app.close())
  return { app, url: `http://127.0.0.1:${(app.fastify.server.address() as AddressInfo).port}`, origin }
}

describe('the server\'s own paths come from its routes: none is ever proxied', () => {
  it('every registered GET route, and everything under a wildcard one, is answered by the server', async (t) => {
    const { app, url, origin } = await appOnRecordingOrigin(t)
    const paths = registeredGetPaths(app)
    for (const expected of ['/health', '/traffic', '/active-transfers', '/metrics', '/monitor', '/monitor/', '/monitor/api/snapshot', '/api/outbox']) {
      assert.ok(paths.includes(expected), `${expected} among the registered routes (${paths.join(' ')})`)
    }
    // printRoutes leaves out a wildcard under a static child (Fastify 5.x):
    // that one is checked by name.
    assert.ok(app.fastify.hasRoute({ method: 'GET', url: '/api/*' }))
    const asked = [...paths, '/api/any/thing', '/api/outbox/retry']
    for (const path of asked) {
      for (const method of ['GET', 'HEAD'] as const) {
        // The live feed (`/monitor/api/events`) never ends: its answer is
        // not awaited past a moment, only where it was answered from.
        const res = await request(`${url}${path}`, { method, signal: AbortSignal.timeout(1000) }).catch(() => undefined)
        await res?.body.dump().catch(() => {})
      }
    }
    // (The dashboard's demo link asks the origin for the demo playlist:
    // that request is the server's own, not a proxied one.)
    assert.deepEqual(origin.received.map((r) => r.url).filter((u) => asked.includes(u)), [], 'the origin saw none of them')
    // The media route still proxies the rest.
    const media = await request(`${url}/healthy.ts`)
    assert.equal(await media.body.text(), 'a file of the origin')
    assert.equal(origin.received.at(-1)?.url, '/healthy.ts')
  })

  it('a route added after the app was built is the server\'s own too', async (t) => {
    const { url, origin } = await appOnRecordingOrigin(t, (app) => {
      app.fastify.get('/status-page', async () => ({ own: true }))
      app.fastify.get('/reports/:id/raw', async () => ({ own: true }))
    })
    for (const path of ['/status-page', '/reports/7/raw']) {
      const res = await request(`${url}${path}`)
      await res.body.dump()
    }
    assert.deepEqual(origin.received, [])
  })

  it('a non-media route that would cover every path is refused at registration', () => {
    const own = new OwnPaths()
    assert.throws(() => { own.add('/:anything') }, /every path/)
    assert.throws(() => { own.add('/*') }, /every path/)
    own.add('/monitor/assets/:name')
    assert.ok(own.has('/monitor/assets/app.js'))
    assert.ok(!own.has('/monitor/assetsx'))
  })
})
