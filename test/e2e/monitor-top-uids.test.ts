import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { request } from 'undici'
import { browserSuite, closeBrowser, openPage } from '../helpers/browser.ts'
import { startTestServer } from '../helpers/test-server.ts'

const root = mkdtempSync(join(tmpdir(), 'sm-monitor-top-'))
writeFileSync(join(root, 'movie.mp4'), Buffer.alloc(300_000, 7))
after(() => rmSync(root, { recursive: true, force: true }))
after(closeBrowser)

describe('the /monitor top list in chromium', browserSuite(), () => {
  it('a uid shows in the top list with its bytes within 5 s of its traffic', async (t) => {
    const server = await startTestServer({ root, startCollector: true, meter: { minBytes: 1048576 } })
    t.after(() => server.close())
    const w = await openPage(t)
    await w.page.goto(`${server.url}/monitor`)
    await w.page.waitForSelector('#feed.ok', { timeout: 5000 })
    assert.equal(await w.page.isVisible('#top-empty'), true)

    for (let i = 0; i < 2; i++) {
      const res = await request(`${server.url}/movie.mp4?uid=carol`)
      assert.equal((await res.body.arrayBuffer()).byteLength, 300_000)
    }
    const done = Date.now()
    const row = await w.page.waitForSelector('#top-rows tr[data-uid="carol"] td[data-bytes="600000"]', { timeout: 5000 })
    const took = Date.now() - done
    assert.equal(await row.textContent(), '585.94 KiB')
    assert.equal(await row.getAttribute('title'), '600,000 bytes')
    const cells = await w.page.$$eval('#top-rows tr[data-uid="carol"] td', (tds) => tds.map((td) => td.textContent))
    assert.deepEqual(cells, ['carol', '585.94 KiB', '2', 'mp4 585.94 KiB', '1', '0', 'pending'])
    assert.equal(await w.page.textContent('#pending'), '1')
    assert.equal(await w.page.textContent('#qualified'), '0')
    assert.deepEqual(w.errors, [])
    t.diagnostic(`carol shown ${took} ms after her traffic`)
  })
})
