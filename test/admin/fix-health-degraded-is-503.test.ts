import assert from 'node:assert/strict'
import { connect } from 'node:net'
import type { AddressInfo } from 'node:net'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, it } from 'node:test'
import { request } from 'undici'
import { StoreError } from '../../src/errors.ts'
import { policyOf, resolveMeterOptions } from '../../src/meter/index.ts'
import { buildApp } from '../../src/server/app.ts'
import { FsOrigin } from '../../src/server/origin/fs-origin.ts'
import { MemoryStore } from '../../src/store/index.ts'
import { waitFor } from '../helpers/wait.ts'

// docs/endpoints.md#health: /health is 200 {status:"ok"}, 200 {status:"degraded"} while the
// store is unreachable (the proxy still serves and meters into memory, so a
// load balancer must not pull it; it used to answer 503), and 503
// {status:"closing"} only while stopping.

const root = mkdtempSync(join(tmpdir(), 'sm-health-'))
writeFileSync(join(root, 'big.mp4'), Buffer.alloc(32 * 1024 * 1024, 1))
after(() => rmSync(root, { recursive: true, force: true }))

it('/health: ok 200, degraded 200 while the store fails, closing 503 while stopping', async (t) => {
  const store = new MemoryStore(policyOf(resolveMeterOptions({ workerId: 'test' })))
  let storeDown = false
  const outboxStats = store.outboxStats.bind(store)
  store.outboxStats = async () => {
    if (storeDown) throw new StoreError('the store is unreachable')
    return await outboxStats()
  }
  const app = buildApp({ origin: new FsOrigin(root), store, collector: () => undefined, shutdownGrace: 5 })
  await app.fastify.listen({ port: 0, host: '127.0.0.1' })
  t.after(() => app.close())
  const { port } = app.fastify.server.address() as AddressInfo
  const health = async (): Promise<{ code: number, body: Record<string, unknown> }> => {
    const res = await request(`http://127.0.0.1:${port}/health`)
    return { code: res.statusCode, body: await res.body.json() as Record<string, unknown> }
  }

  const ok = await health()
  assert.equal(ok.code, 200)
  assert.equal(ok.body.status, 'ok')

  storeDown = true
  const degraded = await health()
  assert.equal(degraded.code, 200)
  assert.equal(degraded.body.status, 'degraded')
  assert.deepEqual(degraded.body.store, { kind: 'memory', ok: false, error: 'SM_ERR_STORE', durable: false, durability: 'memory' })
  storeDown = false

  // Stopping: a download keeps the server draining; a /health request whose
  // headers began before the stop (so its connection is not idle) and ended
  // after it is answered 503 closing.
  const download = connect(port, '127.0.0.1')
  t.after(() => download.destroy())
  download.pause() // a stalled reader: the transfer stays in flight
  download.write('GET /big.mp4?uid=d HTTP/1.1\r\nHost: x\r\n\r\n')
  await waitFor(() => app.transfers.size === 1, 5000, 'the download in flight')
  const probe = connect(port, '127.0.0.1')
  t.after(() => probe.destroy())
  let answer = ''
  probe.on('data', (c: Buffer) => { answer += c.toString('latin1') })
  probe.write('GET /health HTTP/1.1\r\n')
  await new Promise((resolve) => setTimeout(resolve, 50)) // the bytes reach the server
  const closing = app.close()
  assert.equal(app.state, 'closing')
  probe.write('Host: x\r\n\r\n')
  await waitFor(() => answer.includes('}'), 5000, 'the /health answer')
  assert.match(answer, /^HTTP\/1\.1 503 /)
  assert.match(answer, /\r\nconnection: close\r\n/i)
  assert.equal(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)).status, 'closing')
  download.destroy()
  await closing
})
