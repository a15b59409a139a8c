import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import {
  NotFoundError, OriginError, OriginTimeoutError, OriginUnreachableError, RangeNotSatisfiableError, ShuttingDownError,
  errorBody
} from '../../src/errors.ts'
import type { StreammeterError } from '../../src/errors.ts'
import { HttpOrigin } from '../../src/server/origin/http-origin.ts'
import type { HttpOriginOptions } from '../../src/server/origin/http-origin.ts'
import type { ForwardedHeaders, OriginRequest, OriginResponse } from '../../src/server/origin/origin.ts'
import { waitFor } from '../helpers/wait.ts'
import { bodyOf, rejectsWith } from '../helpers/origin-assert.ts'

const SIZE = 1000
const content = Buffer.from(Array.from({ length: SIZE }, (_, i) => (i * 13 + 5) & 0xff))
const ETAG = '"v1-3e8"'
const LAST_MODIFIED = 'Tue, 02 Jan 2024 03:04:05 GMT'
const SECRET = 'db password hunter2 at 10.0.0.5'

/** One request as the origin saw it. */
interface Seen {
  method: string
  url: string
  headers: IncomingHttpHeaders
  socket: Socket
}

/**
 * A real origin on 127.0.0.1, port 0: serves `content` under `/media/` with
 * ETag, Last-Modified, single ranges and If-None-Match, plus a few
 * misbehaving paths. Hop-by-hop headers ride along on every file response.
 */
class FakeOrigin {
  readonly seen: Seen[] = []
  /** Requests whose response closed before it finished (the proxy went away). */
  aborted = 0
  readonly #server: Server
  readonly url: string

  private constructor (server: Server) {
    this.#server = server
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  }

  static async start (t: TestContext): Promise<FakeOrigin> {
    const server = createServer()
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const origin = new FakeOrigin(server)
    server.on('request', (req, res) => origin.#handle(req, res))
    t.after(() => origin.close())
    return origin
  }

  async close (): Promise<void> {
    this.#server.closeAllConnections()
    await new Promise((resolve) => this.#server.close(resolve))
  }

  #handle (req: IncomingMessage, res: ServerResponse): void {
    this.seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, socket: req.socket })
    res.on('close', () => { if (!res.writableFinished) this.aborted++ })
    const url = req.url ?? ''
    const statusPath = /^\/status\/(\d{3})\//.exec(url)
    if (statusPath !== null) {
      const status = Number(statusPath[1])
      res.writeHead(status, { 'content-type': 'text/plain', 'x-origin-detail': SECRET })
      res.end(`internal failure: ${SECRET}`)
      return
    }
    if (url === '/media/stall') return // accept, never answer
    if (url === '/media/slow-body.ts') {
      res.writeHead(200, { 'content-type': 'video/mp2t', 'content-length': String(SIZE) })
      res.write(content.subarray(0, 100)) // …and never the rest
      return
    }
    if (url === '/media/unasked-206.ts') {
      res.writeHead(206, { 'content-range': 'bytes 0-9/1000', 'content-length': '10' }).end(content.subarray(0, 10))
      return
    }
    if (url === '/media/unasked-304.ts') {
      res.writeHead(304, { etag: ETAG }).end()
      return
    }
    if (url === '/media/bare.m3u8') {
      // No Content-Type, no Cache-Control: the proxy fills in its own.
      res.writeHead(200, { 'content-length': '8' }).end('#EXTM3U\n')
      return
    }
    if (!url.startsWith('/media/')) {
      res.writeHead(404).end('no such thing')
      return
    }
    this.#serveFile(req, res)
  }

  #serveFile (req: IncomingMessage, res: ServerResponse): void {
    const common = {
      etag: ETAG,
      'last-modified': LAST_MODIFIED,
      'accept-ranges': 'bytes',
      'cache-control': 'public, max-age=60',
      'content-type': 'video/mp2t',
      // Hop-by-hop, and a connection option naming an end-to-end field.
      connection: 'keep-alive, x-hop, expires',
      'keep-alive': 'timeout=5',
      'x-hop': '1',
      expires: 'Wed, 03 Jan 2024 00:00:00 GMT',
      'proxy-authenticate': 'Basic realm="origin"',
      vary: 'Accept-Encoding',
      'x-powered-by': 'origin-internal',
      // Never passed on: the origin's cookies, CORS and CDN caching.
      'set-cookie': 'origin-session=1; Path=/',
      'access-control-allow-origin': '*',
      'cdn-cache-control': 'public, max-age=3600'
    }
    if (req.headers['if-none-match'] === ETAG) {
      res.writeHead(304, { etag: ETAG, 'cache-control': 'public, max-age=60' }).end()
      return
    }
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '')
    const ifRange = req.headers['if-range']
    if (range !== null && (ifRange === undefined || ifRange === ETAG)) {
      const start = Number(range[1])
      if (start >= SIZE) {
        res.writeHead(416, { 'content-range': `bytes */${SIZE}` }).end()
        return
      }
      const end = range[2] === '' ? SIZE - 1 : Math.min(Number(range[2]), SIZE - 1)
      res.writeHead(206, { ...common, 'content-range': `bytes ${start}-${end}/${SIZE}`, 'content-length': String(end - start + 1) })
      res.end(req.method === 'HEAD' ? undefined : content.subarray(start, end + 1))
      return
    }
    res.writeHead(200, { ...common, 'content-length': String(SIZE) })
    res.end(req.method === 'HEAD' ? undefined : content)
  }
}

function makeOrigin (t: TestContext, options: HttpOriginOptions): HttpOrigin {
  const origin = new HttpOrigin(options)
  t.after(() => origin.close())
  return origin
}

function get (origin: HttpOrigin, path: string, headers: ForwardedHeaders = {}, extra: Partial<OriginRequest> = {}): Promise<OriginResponse> {
  return origin.fetch({ path, method: 'GET', headers, ...extra })
}

/** Nothing the origin said may reach a client: not in the message, not in the JSON body. */
function assertNoOriginMessage (err: StreammeterError): void {
  assert.ok(!err.message.includes('hunter2'))
  assert.ok(!JSON.stringify(errorBody(err)).includes('hunter2'))
  assert.ok(!JSON.stringify(errorBody(err)).includes('internal failure'))
}

describe('HttpOrigin: pass-through', () => {
  it('GET: status, body and every end-to-end header; hop-by-hop, Connection-named, cookies, CORS dropped; our Cache-Control', async (t) => {
    const fake = await FakeOrigin.start(t)
    const origin = makeOrigin(t, { baseUrl: `${fake.url}/media`, timeout: 5 })
    const answer = await get(origin, 'v/seg.ts')
    assert.equal(answer.status, 200)
    assert.equal(answer.length, SIZE)
    const { date, ...rest } = answer.headers
    assert.ok(date !== undefined && !Number.isNaN(Date.parse(date)))
    assert.deepEqual(rest, {
      etag: ETAG,
      'last-modified': LAST_MODIFIED,
      'accept-ranges': 'bytes',
      'cache-control': 'private, max-age=86400',
      'content-type': 'video/mp2t',
      'content-length': String(SIZE),
      vary: 'Accept-Encoding',
      'x-powered-by': 'origin-internal'
    })
    assert.deepEqual(await bodyOf(answer), content)
    assert.equal(fake.seen[0]?.url, '/media/v/seg.ts')
  })

  it('builds the URL from the base path and percent-encoded segments, keeping the base query', async (t) => {
    const fake = await FakeOrigin.start(t)
    const origin = makeOrigin(t, { baseUrl: `${fake.url}/media/?key=k1`, timeout: 5 })
    await bodyOf(await get(origin, 'vidéo/a b+c#d?.ts'))
    assert.equal(fake.seen[0]?.url, '/media/vid%C3%A9o/a%20b%2Bc%23d%3F.ts?key=k1')
  })

  it('sends the base query first, then the client\'s less streammeter\'s parameters and any the base names', async (t) => {
    const fake = await FakeOrigin.start(t)
    const origin = makeOrigin(t, { baseUrl: `${fake.url}/media/?key=k1&v=2`, timeout: 5 })
    await bodyOf(await get(origin, 'a.ts', {}, { query: 'key=mine&_HLS_msn=3&uid=u&k%65y=also-mine&x=%2F+y&v' }))
    await bodyOf(await get(origin, 'a.ts', {}, { query: 'uid=u&token=t' }))
    await bodyOf(await get(origin, 'a.ts', {}, { query: '' }))
    assert.deepEqual(fake.seen.map((s) => s.url), [
      '/media/a.ts?key=k1&v=2&_HLS_msn=3&x=%2F+y',
      '/media/a.ts?key=k1&v=2',
      '/media/a.ts?key=k1&v=2'
    ])
  })

  it('keeps an origin\'s no-store (made private); replaces any other Cache-Control with streammeter\'s', async (t) => {
    const server = createServer((req, res) => {
      res.writeHead(200, { 'content-length': '1', 'cache-control': req.url === '/ns.ts' ? 'public, No-Store' : 'public, max-age=60' }).end('x')
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    t.after(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
    const origin = makeOrigin(t, { baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, timeout: 5 })
    const noStore = await get(origin, 'ns.ts')
    await bodyOf(noStore)
    assert.equal(noStore.headers['cache-control'], 'private, no-store')
    const other = await get(origin, 'p.m3u8')
    await bodyOf(other)
    assert.equal(other.headers['cache-control'], 'private, no-cache')
  })

  it('sends no X-Forwarded-* without a client, and the peer in canonical form with one', async (t) => {
    const fake = await FakeOrigin.start(t)
    const origin = makeOrigin(t, { baseUrl: `${fake.url}/media/`, timeout: 5 })
    await bodyOf(await get(origin, 'a.ts'))
    await bodyOf(await get(origin, 'a.ts', {}, { client: { address: '::ffff:192.0.2.9' } }))
    await bodyOf(await get(origin, 'a.ts', {}, { client: { address: '::ffff:10.0.0.1', forwardedFor: ' 198.51.100.4 ', proto: 'https, http' } }))
    await bodyOf(await get(origin, 'a.ts', {}, { client: { address: '10.0.0.1', proto: 'not a scheme' } }))
    const xff = fake.seen.map((s) => [s.headers['x-forwarded-for'], s.headers['x-forwarded-proto']])
    assert.deepEqual(xff, [[undefined, undefined], ['192.0.2.9', 'http'], ['198.51.100.4, 10.0.0.1', 'https'], ['10.0.0.1', 'http']])
  })

  it('sends accept-encoding: identity whatever the client accepts, and forwards the user agent', async (t) => {
    const fake = await FakeOrigin.start(t)
    const origin = makeOrigin(t, { baseUrl: `${fake.url}/media/`, timeout: 5 })
    await bodyOf(await get(origin, 'a.ts', { 'accept-encoding': 'gzip, br', 'user-agent': 'AppleCoreMedia/1.0' }))
    await bodyOf(await get(origin, 'a.ts'))
    assert.equal(fake.seen[0]?.headers['accept-encoding'], 'identity')
    assert.equal(fake.seen[0]?.headers['user-agent'], 'AppleCoreMedia/1.0')
    assert.match(String(fake.seen[1]?.headers['user-agent']), /^streammeter\/\d+\.\d+\.\d+/)
  })

  it('forwards Range and conditionals, not If-Match/If-Unmodified-Since; passes 206 on', async (t) => {
    const fake = await FakeOrigin.start(t)
    const origin = makeOrigin(t, { baseUrl: `${fake.url}/media/`, timeout: 5 })
    const answer = await get(origin, 'a.ts', {
      range: 'bytes=100-199',
      'if-range': ETAG,
      'if-modified-since': 'Mon, 01 Jan 2024 00:00:00 GMT',
      'if-match': ETAG,
      'if-unmodified-since': LAST_MODIFIED
    })
    assert.equal(answer.status, 206)
    assert.equal(answer.length, 100)
    assert.equal(answer.headers['content-range'], 'bytes 100-199/1000')
    assert.deepEqual(await bodyOf(answer), content.subarray(100, 200))
    const h = fake.seen[0]?.headers ?? {}
    assert.equal(h.range, 'bytes=100-199')
    assert.equal(h['if-range'], ETAG)
    assert.equal(h['if-modified-since'], 'Mon, 01 Jan 2024 00:00:00 GMT')
    assert.equal(h['if-match'], undefined)
    assert.equal(h['if-unmodified-since'], undefined)
  })

  it('If-None-Match is forwarded and a 304 passes on, without a body or length', async (t) => {
    const fake = await FakeOrigin.start(t)
    const origin = makeOrigin(t, { baseUrl: `${fake.url}/media/`, timeout: 5 })
    const answer = await get(origin, 'a.ts', { 'if-none-match': ETAG })
    assert.equal(answer.status, 304)
    assert.equal(answer.body, null)
    assert.equal(answer.length, 0)
    assert.equal(answer.headers.etag, ETAG)
    assert.equal(answer.headers['content-length'], undefined)
    assert.equal(fake.seen[0]?.headers['if-none-match'], ETAG)
  })

  it('whole drops Range and every conditional', async (t) => {
    const fake = await FakeOrigin.start(t)
    const origin = makeOrigin(t, { baseUrl: `${fake.url}/media/`, timeout: 5 })
    const answer = await get(origin, 'a.m3u8', {
      range: 'bytes=0-', 'if-range': ETAG, 'if-none-match': ETAG, 'if-modified-since': LAST_MODIFIED
    }, { whole: true })
    assert.equal(answer.status, 200)
    assert.deepEqual(await bodyOf(answer), content)
    const h = fake.seen[0]?.headers ?? {}
    for (const name of ['range', 'if-range', 'if-none-match', 'if-modified-since']) assert.equal(h[name], undefined, name)
    assert.equal(h['accept-encoding'], 'identity')
  })

  it('a multi-range request is not forwarded: 200 in full, like the filesystem origin', async (t) => {
    const fake = await FakeOrigin.start(t)
    const origin = makeOrigin(t, { baseUrl: `${fake.url}/media/`, timeout: 5 })
    const answer = await get(origin, 'a.ts', { range: 'bytes=0-9,20-29', 'if-range': ETAG })
    assert.equal(answer.status, 200)
    await bodyOf(answer)
    assert.equal(fake.seen[0]?.headers.range, undefined)
    assert.equal(fake.seen[0]?.headers['if-range'], undefined)
  })

  it('HEAD goes to the origin as HEAD: no body, the length a GET would have', async (t) => {
    const fake = await FakeOrigin.start(t)
    const origin = makeOrigin(t, { baseUrl: `${fake.url}/media/`, timeout: 5 })
    const answer = await origin.fetch({ path: 'a.ts', method: 'HEAD', headers: { range: 'bytes=0-9' } })
    assert.equal(answer.status, 206)
    assert.equal(answer.body, null)
    assert.equal(answer.length, 10)
    assert.equal(fake.seen[0]?.method, 'HEAD')
  })

  it('fills in Content-Type and Cache-Control by extension when the origin sends none', async (t) => {
    const fake = await FakeOrigin.start(t)
    const origin = makeOrigin(t, { baseUrl: `${fake.url}/media/`, timeout: 5 })
    const answer = await get(origin, 'bare.m3u8')
    assert.equal(answer.headers['content-type'], 'application/vnd.apple.mpegurl')
    assert.equal(answer.headers['cache-control'], 'private, no-cache')
    assert.equal((await bodyOf(answer)).toString(), '#EXTM3U\n')
  })

  it('reuses one keep-alive connection for sequential requests, error answers included', async (t) => {
    const fake = await FakeOrigin.start(t)
    const origin = makeOrigin(t, { baseUrl: `${fake.url}/media/`, timeout: 5 })
    // The pool takes a connection back on the turn after a body ends.
    const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))
    for (let i = 0; i < 5; i++) {
      await bodyOf(await get(origin, 'a.ts'))
      await tick()
    }
    await rejectsWith(get(origin, 'a.ts', { range: 'bytes=5000-' }), RangeNotSatisfiableError)
    await tick()
    assert.equal((await get(origin, 'a.ts', { 'if-none-match': ETAG })).status, 304)
    await tick()
    await bodyOf(await get(origin, 'a.ts'))
    assert.equal(fake.seen.length, 8)
    assert.equal(new Set(fake.seen.map((s) => s.socket)).size, 1)
  })
})

describe('HttpOrigin: status mapping', () => {
  for (const status of [404, 410]) {
    it(`${status} → NotFoundError`, async (t) => {
      const fake = await FakeOrigin.start(t)
      const origin = makeOrigin(t, { baseUrl: `${fake.url}/status/${status}`, timeout: 5 })
      const err = await rejectsWith(origin.fetch({ path: 'x', method: 'GET', headers: {} }), NotFoundError)
      assert.equal(err.statusCode, 404)
    })
  }

  it('416 → RangeNotSatisfiableError with the size from Content-Range', async (t) => {
    const fake = await FakeOrigin.start(t)
    const origin = makeOrigin(t, { baseUrl: `${fake.url}/media/`, timeout: 5 })
    const err = await rejectsWith(get(origin, 'a.ts', { range: 'bytes=5000-' }), RangeNotSatisfiableError)
    assert.equal(err.size, SIZE)
  })

  for (const status of [500, 503, 302, 401, 403, 412]) {
    it(`${status} → OriginError (502) without the origin's message`, async (t) => {
      const fake = await FakeOrigin.start(t)
      const origin = makeOrigin(t, { baseUrl: `${fake.url}/status/${status}`, timeout: 5 })
      const err = await rejectsWith(origin.fetch({ path: 'x', method: 'GET', headers: {} }), OriginError)
      assert.equal(err.statusCode, 502)
      assert.equal(err.code, 'SM_ERR_ORIGIN_ERROR')
      assertNoOriginMessage(err)
      assert.equal((err.cause as { statusCode?: number }).statusCode, status)
    })
  }

  it('a 206 nobody asked for, or a 304 to an unconditional request → OriginError', async (t) => {
    const fake = await FakeOrigin.start(t)
    const origin = makeOrigin(t, { baseUrl: `${fake.url}/media/`, timeout: 5 })
    await rejectsWith(get(origin, 'unasked-206.ts'), OriginError)
    await rejectsWith(get(origin, 'unasked-304.ts'), OriginError)
  })
})

describe('HttpOrigin: network failures', () => {
  it('a closed port → OriginUnreachableError with the cause kept', async (t) => {
    const server = createServer()
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const port = (server.address() as AddressInfo).port
    await new Promise((resolve) => server.close(resolve))
    const origin = makeOrigin(t, { baseUrl: `http://127.0.0.1:${port}/`, timeout: 5 })
    const err = await rejectsWith(get(origin, 'a.ts'), OriginUnreachableError)
    assert.equal(err.statusCode, 502)
    assert.equal(err.message, 'the origin could not be reached')
    assert.ok(err.cause !== undefined)
  })

  it('an unresolvable host → OriginUnreachableError', async (t) => {
    const origin = makeOrigin(t, { baseUrl: 'http://streammeter-no-such-host.invalid/', timeout: 5 })
    await rejectsWith(get(origin, 'a.ts'), OriginUnreachableError)
  })

  it('an origin that accepts but never answers → OriginTimeoutError after `timeout`', async (t) => {
    const fake = await FakeOrigin.start(t)
    const origin = makeOrigin(t, { baseUrl: `${fake.url}/media/`, timeout: 0.3 })
    const started = Date.now()
    const err = await rejectsWith(get(origin, 'stall'), OriginTimeoutError)
    const elapsed = Date.now() - started
    assert.equal(err.statusCode, 504)
    assert.ok(elapsed >= 250 && elapsed < 2000, `timed out after ${elapsed} ms`)
    await waitFor(() => fake.aborted === 1, 2000, 'the origin to see the request closed')
  })

  it('after close(), fetch refuses with ShuttingDownError; close is idempotent', async (t) => {
    const fake = await FakeOrigin.start(t)
    const origin = new HttpOrigin({ baseUrl: `${fake.url}/media/`, timeout: 5 })
    await bodyOf(await get(origin, 'a.ts'))
    await origin.close()
    await origin.close()
    await rejectsWith(get(origin, 'a.ts'), ShuttingDownError)
  })
})

describe('HttpOrigin: aborts', () => {
  it('aborting after the headers ends the body and the upstream request (the origin sees close)', async (t) => {
    const fake = await FakeOrigin.start(t)
    const origin = makeOrigin(t, { baseUrl: `${fake.url}/media/`, timeout: 5 })
    let abort: ((reason: Error) => void) | undefined
    const answer = await get(origin, 'slow-body.ts', {}, { onAbortable: (a) => { abort = a } })
    assert.equal(answer.status, 200)
    assert.ok(answer.body !== null && abort !== undefined)
    const reading = answer.body.readAll(1 << 20)
    abort(new Error('client went away'))
    await assert.rejects(reading)
    await waitFor(() => fake.aborted === 1, 2000, 'the origin to see the request closed')
  })

  it('aborting while waiting for the headers rejects with the abort reason and closes the upstream request', async (t) => {
    const fake = await FakeOrigin.start(t)
    const origin = makeOrigin(t, { baseUrl: `${fake.url}/media/`, timeout: 5 })
    let abort: ((reason: Error) => void) | undefined
    const pending = get(origin, 'stall', {}, { onAbortable: (a) => { abort = a } })
    await waitFor(() => fake.seen.length === 1, 2000, 'the request to reach the origin')
    const reason = new Error('client went away')
    abort?.(reason)
    await assert.rejects(pending, (err) => err === reason)
    await waitFor(() => fake.aborted === 1, 2000, 'the origin to see the request closed')
  })

  it('a client leaving while its request waits for a connection rejects at once; the request never goes out', async (t) => {
    const fake = await FakeOrigin.start(t)
    const origin = makeOrigin(t, { baseUrl: `${fake.url}/media/`, timeout: 5, connections: 1 })
    const holding = get(origin, 'slow-body.ts') // headers, then never the rest: holds the connection
    const answer = await holding
    let abort: ((reason: Error) => void) | undefined
    const waiting = get(origin, 'a.ts', {}, { onAbortable: (a) => { abort = a } })
    const reason = new Error('client went away')
    const started = Date.now()
    abort?.(reason)
    await assert.rejects(waiting, (err) => err === reason)
    assert.ok(Date.now() - started < 1000)
    answer.body?.destroy()
    await waitFor(() => fake.aborted === 1, 2000, 'the holding request to close')
    // The next request takes the freed connection; the abandoned one never went out.
    await bodyOf(await get(origin, 'b.ts'))
    assert.deepEqual(fake.seen.map((s) => s.url), ['/media/slow-body.ts', '/media/b.ts'])
  })
})

describe('HttpOrigin: configuration', () => {
  it('refuses a base URL that is not http(s)', () => {
    assert.throws(() => new HttpOrigin({ baseUrl: 'ftp://x/', timeout: 1 }), { code: 'SM_ERR_CONFIG' })
    assert.throws(() => new HttpOrigin({ baseUrl: 'not a url', timeout: 1 }), { code: 'SM_ERR_CONFIG' })
  })

  it('user info in the base URL becomes Basic authorization', async (t) => {
    const fake = await FakeOrigin.start(t)
    const origin = makeOrigin(t, { baseUrl: fake.url.replace('http://', 'http://us%40er:p%3Ass@') + '/media/', timeout: 5 })
    await bodyOf(await get(origin, 'a.ts'))
    assert.equal(fake.seen[0]?.headers.authorization, 'Basic ' + Buffer.from('us@er:p:ss').toString('base64'))
  })
})
