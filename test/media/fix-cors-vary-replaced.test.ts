import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { request } from 'undici'
import { startTestServer } from '../helpers/test-server.ts'

/**
 * With a CORS_ORIGINS list (not `*`), the proxy's `Vary: Origin` replaced
 * the origin's own `Vary` (say `Accept-Encoding`), so a cache in front of
 * the proxy could hand one representation to a request the origin would
 * have answered with another. The two are now merged (RFC 9110 §12.5.5).
 */

const PLAYER = 'https://player.example'
const dir = mkdtempSync(join(tmpdir(), 'sm-vary-'))
after(() => rmSync(dir, { recursive: true, force: true }))
writeFileSync(join(dir, 'a.ts'), Buffer.alloc(100, 1))

/** The `Vary` the origin sends, by file. */
const VARY: Record<string, string> = { '/ae.ts': 'Accept-Encoding', '/ae-origin.ts': 'Accept-Encoding, origin', '/star.ts': '*' }

/** A real HTTP origin answering every path with 100 bytes and the `Vary` of {@link VARY}. */
async function varyingOrigin (t: TestContext): Promise<string> {
  const server = createServer((req, res) => {
    const vary = VARY[req.url ?? '']
    res.writeHead(200, { 'content-type': 'video/mp2t', 'content-length': '100', ...(vary === undefined ? {} : { vary }) })
    res.end(Buffer.alloc(100, 2))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`
}

async function varyOf (url: string): Promise<string | undefined> {
  const res = await request(url, { headers: { origin: PLAYER } })
  assert.equal(res.statusCode, 200)
  assert.equal(res.headers['access-control-allow-origin'], PLAYER)
  await res.body.dump()
  const vary = res.headers.vary
  return Array.isArray(vary) ? vary.join(', ') : vary
}

describe('CORS_ORIGINS list: Vary merges the origin\'s with Origin', () => {
  it('HTTP origin: Vary: Accept-Encoding → Vary: Accept-Encoding, Origin (once, whatever the origin sent)', async (t) => {
    const origin = await varyingOrigin(t)
    const server = await startTestServer({ originUrl: origin, corsOrigins: [PLAYER] })
    t.after(() => server.close())
    assert.equal(await varyOf(`${server.url}/ae.ts`), 'Accept-Encoding, Origin')
    assert.equal(await varyOf(`${server.url}/ae-origin.ts`), 'Accept-Encoding, origin')
    assert.equal(await varyOf(`${server.url}/star.ts`), '*')
    assert.equal(await varyOf(`${server.url}/none.ts`), 'Origin')
  })

  it('filesystem origin: Vary: Origin', async (t) => {
    const server = await startTestServer({ root: dir, corsOrigins: [PLAYER] })
    t.after(() => server.close())
    assert.equal(await varyOf(`${server.url}/a.ts`), 'Origin')
  })

  it('with CORS_ORIGINS=* the origin\'s Vary passes as it is', async (t) => {
    const origin = await varyingOrigin(t)
    const server = await startTestServer({ originUrl: origin })
    t.after(() => server.close())
    const res = await request(`${server.url}/ae.ts`, { headers: { origin: PLAYER } })
    await res.body.dump()
    assert.equal(res.headers['access-control-allow-origin'], '*')
    assert.equal(res.headers.vary, 'Accept-Encoding')
  })
})
