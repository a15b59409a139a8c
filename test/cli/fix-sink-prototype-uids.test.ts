import assert from 'node:assert/strict'
import { statSync } from 'node:fs'
import { it } from 'node:test'
import { request } from 'undici'
import { startSink } from '../../src/sink/index.ts'
import { startTestServer } from '../helpers/test-server.ts'

/**
 * The sink's `GET /totals` built its answer in a plain object, where a uid
 * named `__proto__` set the prototype instead of a key and vanished from the
 * totals. Uids are any string a platform chooses: `__proto__`, `constructor`
 * and `toString` are billed like any other.
 */

const media = new URL('../../examples/media/', import.meta.url).pathname
const SEGMENT = 'plain/seg000.ts'
const SIZE = statSync(`${media}${SEGMENT}`).size
const UIDS = ['__proto__', 'constructor', 'toString', 'alice']

it('a real report for uids named like Object.prototype members: /totals keeps every one, exactly', async (t) => {
  const sink = await startSink({ port: 0 })
  t.after(() => sink.close())
  const server = await startTestServer({ root: media, meter: { minBytes: 0, reportUrl: `${sink.url}/usage` } })
  t.after(() => server.close())

  for (const [i, uid] of UIDS.entries()) {
    // i + 1 downloads each, so that every uid has its own total.
    for (let n = 0; n <= i; n++) {
      const res = await request(`${server.url}/${SEGMENT}?uid=${encodeURIComponent(uid)}`)
      assert.equal(res.statusCode, 200)
      assert.equal((await res.body.arrayBuffer()).byteLength, SIZE)
    }
  }
  await server.app.idle()
  await server.collector.seal({ force: true })
  assert.deepEqual(await server.collector.deliverPending(), { delivered: 1, failed: false })

  const res = await request(`${sink.url}/totals`)
  assert.equal(res.statusCode, 200)
  assert.equal(await res.body.text(),
    `{"__proto__":${SIZE},"alice":${4 * SIZE},"constructor":${2 * SIZE},"toString":${3 * SIZE}}`)
})
