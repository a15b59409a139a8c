import assert from 'node:assert/strict'
import { copyFileSync, cpSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { after, describe, it } from 'node:test'
import { request } from 'undici'
import { browserSuite, closeBrowser, openPage, outputDir } from '../helpers/browser.ts'
import { startTestServer } from '../helpers/test-server.ts'
import { waitFor } from '../helpers/wait.ts'

// The demo media plus a large file that a slow client keeps in the active transfers.
const root = mkdtempSync(join(tmpdir(), 'sm-monitor-shot-'))
cpSync(join(import.meta.dirname, '..', '..', 'examples', 'media'), root, { recursive: true })
writeFileSync(join(root, 'feature.mp4'), Buffer.alloc(48 * 1048576, 5))
after(() => rmSync(root, { recursive: true, force: true }))
after(closeBrowser)

describe('the /monitor screenshot (docs/dashboard.png)', browserSuite(), () => {
  it('writes a screenshot of the dashboard with traffic, a transfer in flight and the demo playing', async (t) => {
    const server = await startTestServer({ root, startCollector: true, meter: { minBytes: 500_000 }, shutdownGrace: 2 })
    t.after(() => server.close())
    const w = await openPage(t)
    await w.page.goto(`${server.url}/monitor`)
    await w.page.waitForSelector('#demo-play:not([disabled])', { timeout: 5000 })
    await w.page.click('#demo-play')
    for (const uid of ['alice', 'bob', 'carol']) {
      for (const path of ['master.m3u8', 'plain/index.m3u8', 'plain/seg000.ts', 'plain/seg001.ts', 'sample.mp4']) {
        await (await request(`${server.url}/${path}?uid=${uid}`)).body.arrayBuffer()
        if (uid === 'bob') break
      }
    }
    const held = await request(`${server.url}/feature.mp4?uid=dave`, { headers: { 'x-session-id': 'tv-living-room' } })
    // Hung up at the end of the test, before the server closes; otherwise close() waits out the grace for it.
    const hangUp = (): void => { (held.body as unknown as Readable).destroy() }
    t.after(hangUp)
    // Runs in the page (this project compiles without the DOM lib, hence `any`).
    await w.page.waitForFunction(() => (globalThis as any).document.getElementById('demo-video').currentTime > 2.5, null, { timeout: 15_000 })
    await w.page.waitForSelector('#top-rows tr[data-uid="carol"]', { timeout: 5000 })
    await w.page.waitForSelector('#transfer-rows tr[data-uid="dave"]', { timeout: 5000 })
    await waitFor(async () => Number(await w.page.getAttribute('#chart-bytes', 'data-points')) >= 4, 5000, 'four samples on the chart')

    const file = join(outputDir('monitor-screenshot'), 'dashboard.png')
    await w.page.screenshot({ path: file, fullPage: true })
    const png = readFileSync(file)
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
    assert.ok(statSync(file).size > 20_000)
    assert.deepEqual(w.errors, [])
    // UPDATE_DOCS_SCREENSHOT=1 refreshes the copy that docs/dashboard.md shows.
    if (process.env.UPDATE_DOCS_SCREENSHOT === '1') copyFileSync(file, join(import.meta.dirname, '..', '..', 'docs', 'dashboard.png'))
    t.diagnostic(`screenshot: ${file}`)
    hangUp()
  })
})
