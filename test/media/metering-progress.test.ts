import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { it } from 'node:test'
import { request } from 'undici'
import { startStaticOrigin } from '../helpers/static-origin.ts'
import { startTestServer } from '../helpers/test-server.ts'

const MiB = 1024 * 1024

// Both origins push bodies through their own code path (file-body.ts,
// dispatched-response.ts); each must count what the socket took as it goes.
for (const kind of ['filesystem', 'http'] as const) {
  it(`a long response is recorded in pieces while it streams, and whole as one request (${kind} origin)`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sm-progress-'))
    t.after(() => rmSync(dir, { recursive: true, force: true }))
    writeFileSync(join(dir, 'long.mp4'), Buffer.alloc(16 * MiB, 3))
    const http = kind === 'http' ? await startStaticOrigin(dir) : undefined
    const server = await startTestServer({ ...(http !== undefined ? { originUrl: http.url } : { root: dir }), meter: { minBytes: 0 } })
    t.after(async () => {
      await server.close()
      await http?.close()
    })

    const res = await request(`${server.url}/long.mp4?uid=viewer`)
    let received = 0
    const seen: number[] = []
    for await (const chunk of res.body) {
      received += (chunk as Buffer).length
      if (received >= (seen.length + 1) * 4 * MiB && seen.length < 3) {
        // A flush mid-response: the bytes so far reach the store now.
        await server.collector.flush()
        const [r] = await server.store.records()
        seen.push(r?.bytes ?? 0)
      }
    }
    assert.equal(received, 16 * MiB)
    assert.equal(seen.length, 3)
    for (const [i, bytes] of seen.entries()) {
      assert.ok(bytes > 0 && bytes <= 16 * MiB, `flush ${i + 1} stored ${bytes} bytes`)
      if (i > 0) assert.ok(bytes > (seen[i - 1] as number), `flush ${i + 1} stored more than flush ${i}`)
    }
    await server.app.idle()
    await server.collector.flush()
    const [record] = await server.store.records()
    assert.equal(record?.bytes, 16 * MiB)
    assert.equal(record?.requests, 1)
    assert.deepEqual(record?.fileTypes, { mp4: 16 * MiB })
  })
}
