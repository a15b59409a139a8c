import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { after, describe, it } from 'node:test'
import { request } from 'undici'
import { startTestServer } from '../helpers/test-server.ts'
import { waitFor } from '../helpers/wait.ts'

const root = mkdtempSync(join(tmpdir(), 'sm-monitor-events-'))
writeFileSync(join(root, 'a.ts'), Buffer.alloc(50_000, 1))
after(() => rmSync(root, { recursive: true, force: true }))

const ADMIN = 'admin-token-events'
const API_KEY = 'api-key-events-9'

interface Feed {
  events: Array<{ event: string, data: string, at: number }>
  comments: string[]
  raw: string[]
  ended: Promise<void>
  body: Readable
}

/** Read a text/event-stream as it arrives. */
function readFeed (body: Readable): Feed {
  const feed: Feed = { events: [], comments: [], raw: [], body, ended: Promise.resolve() }
  let buffer = ''
  body.setEncoding('utf8')
  body.on('data', (chunk: string) => {
    feed.raw.push(chunk)
    buffer += chunk
    let end
    while ((end = buffer.indexOf('\n\n')) !== -1) {
      const block = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      if (block.startsWith(':')) feed.comments.push(block)
      const event = /^event: (.*)$/m.exec(block)?.[1]
      const data = /^data: (.*)$/m.exec(block)?.[1]
      if (event !== undefined && data !== undefined) feed.events.push({ event, data, at: Date.now() })
    }
  })
  feed.ended = new Promise((resolve) => body.on('close', () => resolve()))
  body.on('error', () => {})
  return feed
}

describe('/monitor/api/events: the dashboard\'s live feed (SSE)', () => {
  it('sends the whole document at once, then one event per second; no secret in it', async (t) => {
    const server = await startTestServer({ root, adminToken: ADMIN, meter: { apiKey: API_KEY, reportUrl: 'http://127.0.0.1:9/usage?key=zzz' } })
    t.after(() => server.close())
    const res = await request(`${server.url}/monitor/api/events`, { headers: { authorization: `Bearer ${ADMIN}` } })
    assert.equal(res.statusCode, 200)
    assert.equal(res.headers['content-type'], 'text/event-stream; charset=utf-8')
    assert.equal(res.headers['cache-control'], 'no-store')
    assert.equal(res.headers['x-content-type-options'], 'nosniff')
    const feed = readFeed(res.body as unknown as Readable)
    t.after(() => feed.body.destroy())
    await (await request(`${server.url}/a.ts?uid=watcher`)).body.dump()
    await waitFor(() => feed.events.length >= 3, 4000, 'three events')
    assert.match(feed.raw.join(''), /^retry: 2000\n\n/)
    const [first, second, third] = feed.events
    assert.equal(first!.event, 'snapshot')
    for (const e of [second!, third!]) assert.equal(e.event, 'snapshot')
    assert.ok(third!.at - second!.at <= 2000, `events ${third!.at - second!.at} ms apart`)
    const doc = JSON.parse(third!.data)
    for (const key of ['generated_at', 'throughput', 'active_transfers', 'window', 'delivery', 'store']) assert.ok(key in doc, key)
    // Periodic events repeat only the last seconds of history.
    assert.ok(doc.throughput.t.length <= 11)
    assert.ok(doc.throughput.t.every((s: number) => s > Date.now() / 1000 - 12))
    const all = feed.raw.join('')
    for (const secret of [ADMIN, API_KEY, 'zzz']) assert.ok(!all.includes(secret), `shows ${secret}`)
    assert.equal(server.app.monitor.events.viewers, 1)
  })

  it('costs nothing without viewers: no timer and no status() until someone watches, and again after they leave', async (t) => {
    const server = await startTestServer({ root })
    t.after(() => server.close())
    const events = server.app.monitor.events
    let statusCalls = 0
    const status = server.collector.status.bind(server.collector)
    server.collector.status = async (top) => { statusCalls++; return await status(top) }
    assert.equal(events.running, false)
    assert.equal(events.viewers, 0)

    const res = await request(`${server.url}/monitor/api/events`)
    const feed = readFeed(res.body as unknown as Readable)
    await waitFor(() => feed.events.length >= 2, 4000, 'two events')
    assert.equal(events.running, true)
    assert.ok(statusCalls >= 2)
    feed.body.destroy()
    await waitFor(() => events.viewers === 0, 2000, 'the viewer gone')
    assert.equal(events.running, false)
    const calls = statusCalls
    await new Promise((resolve) => setTimeout(resolve, 1500))
    assert.equal(statusCalls, calls, 'status() ran with nobody watching')
  })

  it('an open dashboard never delays a graceful shutdown: the streams end at once', async (t) => {
    const server = await startTestServer({ root, shutdownGrace: 30 })
    t.after(() => server.close())
    const feeds: Feed[] = []
    for (let i = 0; i < 2; i++) {
      const res = await request(`${server.url}/monitor/api/events`)
      feeds.push(readFeed(res.body as unknown as Readable))
    }
    await waitFor(() => feeds.every((f) => f.events.length >= 1), 4000, 'first events')
    const started = Date.now()
    await server.close()
    const took = Date.now() - started
    // Well under the 2 s linger and the 30 s grace a held connection would cost.
    assert.ok(took < 1500, `close() took ${took} ms with two dashboards open`)
    await Promise.all(feeds.map((f) => f.ended))
    assert.equal(server.app.monitor.events.viewers, 0)
    assert.equal(server.app.monitor.events.running, false)
  })
})
