import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { request } from 'undici'
import { signedQuery } from '../../src/server/access/url-signer.ts'
import { runFfmpeg, startCountingRelay } from '../helpers/counting-relay.ts'
import { Receiver } from '../helpers/receiver.ts'
import { meteredBytes, startTestServer } from '../helpers/test-server.ts'

const SECRET = 'exact-secret'
const media = new URL('../../examples/media', import.meta.url).pathname
const UID = 'exact-user'

describe('metering is exact', () => {
  it('ffmpeg playback + full downloads + ranges + HEADs: reported bytes == bytes the clients received', async (t) => {
    const receiver = await Receiver.start()
    t.after(() => receiver.close())
    const server = await startTestServer({
      root: media,
      signingSecret: SECRET,
      meter: { reportUrl: receiver.url, minBytes: 1048576 }
    })
    t.after(() => server.close())
    const relay = await startCountingRelay(server.url)
    t.after(() => relay.close())
    const expires = Math.floor(Date.now() / 1000) + 600
    const q = (path: string): string => signedQuery({ secret: SECRET, uid: UID, path, expires })
    let received = 0

    // Two full HLS playbacks (plain and AES-128), every byte through the counting relay.
    for (const variant of ['plain', 'enc']) {
      const path = `${variant}/index.m3u8`
      const r = await runFfmpeg(['-i', `${relay.url}/${path}?${q(path)}`, '-c', 'copy', '-f', 'mpegts', '-y', '/dev/null'])
      assert.equal(r.code, 0, r.stderr)
    }
    received += relay.received.get(UID) ?? 0
    assert.ok(received > 500_000)

    // Full downloads, ranges and HEADs straight from the proxy.
    const get = async (path: string, headers: Record<string, string> = {}, method: 'GET' | 'HEAD' = 'GET'): Promise<number> => {
      const res = await request(`${server.url}/${path}?${q(path)}`, { method, headers })
      const body = Buffer.from(await res.body.arrayBuffer())
      assert.ok(res.statusCode < 300, `${res.statusCode} for ${path}`)
      return body.length
    }
    for (let i = 0; i < 3; i++) received += await get('sample.mp4')
    received += await get('fmp4/init.mp4')
    received += await get('sample.mp4', { range: 'bytes=1000-50999' })
    received += await get('sample.mp4', { range: 'bytes=-4096' })
    received += await get('plain/seg001.ts', { range: 'bytes=188-' })
    received += await get('master.m3u8', { range: 'bytes=0-' }) // a playlist is always whole
    assert.equal(await get('sample.mp4', {}, 'HEAD'), 0)
    assert.equal(await get('plain/seg000.ts', { range: 'bytes=0-99' }, 'HEAD'), 0)

    assert.equal((await meteredBytes(server)).get(UID), received, 'metered before the report')
    await server.close() // graceful: flush, seal, deliver
    assert.deepEqual([...receiver.totals()], [[UID, received]])
    t.diagnostic(`uid ${UID}: ${received} bytes received by clients, ${receiver.totals().get(UID)} reported in ${receiver.reports.length} report(s)`)
  })

  it('an aborted download reports at least what was received and at most 4 MiB more', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sm-abort-'))
    t.after(() => rmSync(dir, { recursive: true, force: true }))
    writeFileSync(join(dir, 'big.mp4'), Buffer.alloc(64 * 1024 * 1024, 9))
    const server = await startTestServer({ root: dir })
    t.after(() => server.close())
    const res = await request(`${server.url}/big.mp4?uid=aborter`)
    let got = 0
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      got += chunk.length
      if (got >= 3 * 1024 * 1024) break // leaving the loop destroys the body: the client hangs up
    }
    const metered = (await meteredBytes(server)).get('aborter') ?? 0
    t.diagnostic(`received ${got}, metered ${metered} (+${metered - got})`)
    assert.ok(metered >= got, `metered ${metered} < received ${got}`)
    assert.ok(metered <= got + 4 * 1024 * 1024, `metered ${metered} > received ${got} + 4 MiB`)
  })
})
