import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { request } from 'undici'
import { browserSuite, closeBrowser, openPage } from '../helpers/browser.ts'
import { startTestServer } from '../helpers/test-server.ts'
import { waitFor } from '../helpers/wait.ts'

const root = mkdtempSync(join(tmpdir(), 'sm-monitor-load-'))
writeFileSync(join(root, 'seg.ts'), Buffer.alloc(400_000, 1))
writeFileSync(join(root, 'index.m3u8'), '#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nseg.ts\n#EXT-X-ENDLIST\n')
after(() => rmSync(root, { recursive: true, force: true }))
after(closeBrowser)

const ADMIN = 'admin-token-page'

describe('the /monitor page in chromium', browserSuite(), () => {
  it('loads behind Basic auth with no console error and no failed request; the charts draw the traffic', async (t) => {
    const server = await startTestServer({ root, adminToken: ADMIN, startCollector: true })
    t.after(() => server.close())
    // The browser answers the server's Basic challenge, as a person at the prompt would.
    const w = await openPage(t, { username: 'operator', password: ADMIN })
    const res = await w.page.goto(`${server.url}/monitor`)
    assert.equal(res?.status(), 200)
    await w.page.waitForSelector('#feed.ok', { timeout: 5000 })
    assert.equal(await w.page.textContent('#feed'), 'live')

    for (let i = 0; i < 3; i++) {
      await (await request(`${server.url}/index.m3u8?uid=viewer`)).body.dump()
      assert.equal((await (await request(`${server.url}/seg.ts?uid=viewer`)).body.arrayBuffer()).byteLength, 400_000)
    }
    // Both charts hold samples with the traffic in them, and drew them.
    await waitFor(async () => Number(await w.page.getAttribute('#chart-bytes', 'data-nonzero')) > 0 &&
      Number(await w.page.getAttribute('#chart-requests', 'data-nonzero')) > 0, 5000, 'traffic on both charts')
    for (const id of ['chart-bytes', 'chart-requests']) {
      // Page-side code takes `any`: this project compiles without the DOM lib.
      const drawn = await w.page.$eval(`#${id} canvas`, (canvas: any) => {
        const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height)
        let painted = 0
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted++
        return painted
      })
      assert.ok(drawn > 500, `${id}: ${drawn} painted pixels`)
    }
    assert.deepEqual(w.errors, [])
    assert.deepEqual(w.failed, [])
    // Every panel has its figures.
    assert.equal(await w.page.textContent('#store-kind'), 'memory')
    assert.equal(await w.page.textContent('#store-health'), 'available')
    assert.match(await w.page.textContent('#countdown') ?? '', /^\d+ (s|m \d\d s)$/)
    assert.match(await w.page.textContent('#outbox') ?? '', /^0 report\(s\), 0 B$/)
    assert.equal(await w.page.textContent('#demo-status'), 'the origin has no /master.m3u8: the demo stream is only there when no origin is configured (the bundled examples/media)')
    assert.equal(await w.page.isDisabled('#demo-play'), true)
    // The token is nowhere in the page.
    assert.ok(!(await w.page.content()).includes(ADMIN))
  })
})
