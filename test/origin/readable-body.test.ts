import assert from 'node:assert/strict'
import { Readable } from 'node:stream'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { request } from 'undici'
import { OriginBodyTooLargeError } from '../../src/errors.ts'
import type { Origin, OriginRequest, OriginResponse } from '../../src/server/origin/origin.ts'
import { ReadableBody } from '../../src/server/origin/readable-body.ts'
import { meteredBytes, startTestServer } from '../helpers/test-server.ts'
import type { TestServer } from '../helpers/test-server.ts'
import { waitFor } from '../helpers/wait.ts'

const CHUNK = 64 * 1024

/**
 * An origin of one's own whose bodies are `Readable`s: `n.ts` is n chunks of
 * 64 KiB; `broken.ts` announces 4 chunks and fails after 1; `endless.ts`
 * announces 1,000 and yields them as fast as they are read.
 */
class StreamOrigin implements Origin {
  readonly kind = 'http' as const
  readonly streams: Readable[] = []

  async fetch (request: OriginRequest): Promise<OriginResponse> {
    const name = request.path.replace(/\.ts$/, '')
    const chunks = name === 'broken' ? 4 : name === 'endless' ? 1000 : Number(name)
    const length = chunks * CHUNK
    const headers = { 'content-type': 'video/mp2t', 'content-length': String(length) }
    if (request.method === 'HEAD') return { status: 200, headers, body: null, length }
    const stream = Readable.from((function * () {
      for (let i = 0; i < chunks; i++) {
        if (name === 'broken' && i === 1) throw new Error('the origin failed')
        yield Buffer.alloc(CHUNK, i % 251)
      }
    })(), { objectMode: false })
    this.streams.push(stream)
    return { status: 200, headers, body: new ReadableBody(stream), length }
  }

  async close (): Promise<void> {}
}

async function serve (t: TestContext): Promise<{ server: TestServer, origin: StreamOrigin }> {
  const origin = new StreamOrigin()
  const server = await startTestServer({ origin })
  t.after(() => server.close())
  return { server, origin }
}

describe('ReadableBody: a Readable from an origin of one\'s own', () => {
  it('is sent whole and metered byte for byte', async (t) => {
    const { server } = await serve(t)
    const res = await request(`${server.url}/16.ts?uid=reader`)
    const body = Buffer.from(await res.body.arrayBuffer())
    assert.equal(res.statusCode, 200)
    assert.equal(body.length, 16 * CHUNK)
    assert.equal(body[15 * CHUNK], 15)
    assert.equal((await meteredBytes(server)).get('reader'), 16 * CHUNK)
  })

  it('a client that leaves destroys the stream and is metered what its socket took', async (t) => {
    const { server, origin } = await serve(t)
    const res = await request(`${server.url}/endless.ts?uid=leaver`)
    let got = 0
    for await (const chunk of res.body) {
      got += (chunk as Buffer).length
      if (got >= 4 * CHUNK) break // leaves the loop: undici destroys the body
    }
    await waitFor(() => origin.streams[0]?.destroyed === true, 2000, 'the origin stream to be destroyed')
    const metered = (await meteredBytes(server)).get('leaver') ?? 0
    assert.ok(metered >= got, `metered ${metered} < received ${got}`)
    assert.ok(metered < 1000 * CHUNK, 'not the whole announced length')
  })

  it('an origin stream that fails cuts the response rather than ending it short', async (t) => {
    const { server } = await serve(t)
    const res = await request(`${server.url}/broken.ts?uid=cut`)
    assert.equal(res.statusCode, 200)
    await assert.rejects(res.body.arrayBuffer())
    assert.equal((await meteredBytes(server)).get('cut'), CHUNK)
  })

  it('readAll reads the whole stream, and refuses one longer than the limit', async () => {
    const origin = new StreamOrigin()
    const ok = await origin.fetch({ path: '3.ts', method: 'GET', headers: {} })
    assert.equal((await ok.body?.readAll(3 * CHUNK))?.length, 3 * CHUNK)
    const big = await origin.fetch({ path: '3.ts', method: 'GET', headers: {} })
    await assert.rejects(big.body?.readAll(2 * CHUNK) ?? Promise.resolve(), OriginBodyTooLargeError)
    await waitFor(() => origin.streams[1]?.destroyed === true, 2000, 'the stream to be destroyed')
  })
})
