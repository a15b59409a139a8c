import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { request } from 'undici'
import { meteredBytes, startTestServer } from '../helpers/test-server.ts'
import { waitFor } from '../helpers/wait.ts'

/**
 * An HTTP origin that holds every request: `/stall` never answers, `/trickle`
 * sends its headers (10 MiB announced) and one 64 KiB chunk, then waits. It
 * counts the requests whose connection closed before it finished them.
 */
async function holdingOrigin (t: TestContext): Promise<{ url: string, seen: () => number, closed: () => number }> {
  let seen = 0
  let closed = 0
  const open = new Set<ServerResponse>()
  const server: Server = createServer((req, res) => {
    seen++
    open.add(res)
    res.on('close', () => {
      open.delete(res)
      if (!res.writableFinished) closed++
    })
    if (req.url?.startsWith('/trickle') === true) {
      res.writeHead(200, { 'content-type': 'video/mp2t', 'content-length': String(10 * 1024 * 1024) })
      res.write(Buffer.alloc(64 * 1024, 7))
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(async () => {
    for (const res of open) res.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const { port } = server.address() as AddressInfo
  return { url: `http://127.0.0.1:${port}/`, seen: () => seen, closed: () => closed }
}

async function requestsWithStatus (metricsText: string, status: string): Promise<number> {
  let n = 0
  for (const line of metricsText.split('\n')) {
    if (line.startsWith('streammeter_requests_total{') && line.includes(`status="${status}"`)) n += Number(line.split(' ').pop())
  }
  return n
}

describe('a client that goes away aborts the origin request (HTTP origin)', () => {
  it('before the origin answered: the origin sees its request closed, the request counts as 499', async (t) => {
    const origin = await holdingOrigin(t)
    const server = await startTestServer({ originUrl: origin.url, originTimeout: 30 })
    t.after(() => server.close())
    const client = new AbortController()
    const pending = request(`${server.url}/stall.ts?uid=gone`, { signal: client.signal })
    await waitFor(() => origin.seen() === 1, 2000, 'the request to reach the origin')
    client.abort()
    await assert.rejects(pending)
    await waitFor(() => origin.closed() === 1, 2000, 'the origin to see the request closed')
    await server.app.idle()
    const metrics = await server.app.metrics.registry.metrics()
    assert.equal(await requestsWithStatus(metrics, '499'), 1)
    assert.equal((await meteredBytes(server)).get('gone'), undefined, 'nothing was sent, nothing is metered')
  })

  it('in the middle of the body: the origin sees its request closed, what the client took is metered', async (t) => {
    const origin = await holdingOrigin(t)
    const server = await startTestServer({ originUrl: origin.url, originTimeout: 30 })
    t.after(() => server.close())
    const client = new AbortController()
    const res = await request(`${server.url}/trickle.ts?uid=midway`, { signal: client.signal })
    assert.equal(res.statusCode, 200)
    let received = 0
    for await (const chunk of res.body) {
      received += (chunk as Buffer).length
      if (received >= 64 * 1024) break // leaving the loop destroys the body: the client hangs up
    }
    await waitFor(() => origin.closed() === 1, 2000, 'the origin to see the request closed')
    await server.app.idle()
    const metered = (await meteredBytes(server)).get('midway') ?? 0
    assert.equal(metered, 64 * 1024, 'the one chunk the origin sent was handed to the client socket')
    assert.equal(received, 64 * 1024)
  })
})
