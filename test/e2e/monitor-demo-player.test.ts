import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { browserSuite, closeBrowser, openPage } from '../helpers/browser.ts'
import { meteredBytes, startTestServer } from '../helpers/test-server.ts'

const DEMO_MEDIA = join(import.meta.dirname, '..', '..', 'examples', 'media')
after(closeBrowser)

// Runs in the page (this project compiles without the DOM lib, hence `any`).
const VIDEO_PAST_2S = (): boolean => (globalThis as any).document.getElementById('demo-video').currentTime > 2

describe('the /monitor demo player in chromium', browserSuite(), () => {
  it('plays the demo stream through the proxy with a signed URL, and the demo uid\'s bytes rise', async (t) => {
    const server = await startTestServer({ root: DEMO_MEDIA, signingSecret: 'demo-player-secret', startCollector: true })
    t.after(() => server.close())
    const w = await openPage(t)
    await w.page.goto(`${server.url}/monitor`)
    await w.page.waitForSelector('#demo-play:not([disabled])', { timeout: 5000 })
    assert.equal((await meteredBytes(server)).get('demo'), undefined)

    await w.page.click('#demo-play')
    // Real playback: the clock of the video element runs past 2 s of the 8 s stream.
    await w.page.waitForFunction(VIDEO_PAST_2S, null, { timeout: 15_000 })
    const video = await w.page.$eval('#demo-video', (v: any) => ({ width: v.videoWidth, height: v.videoHeight, src: v.src }))
    assert.deepEqual({ width: video.width, height: video.height }, { width: 320, height: 180 })
    assert.match(video.src, /^blob:/) // Media Source Extensions (hls.js), not a native fallback

    // The meter moved: the demo uid shows on the page and in the store.
    const bytesCell = await w.page.waitForSelector('#top-rows tr[data-uid="demo"] td[data-bytes]', { timeout: 5000 })
    const shown = Number(await bytesCell.getAttribute('data-bytes'))
    assert.ok(shown > 100_000, `demo shows ${shown} bytes`)
    const metered = (await meteredBytes(server)).get('demo') ?? 0
    assert.ok(metered >= shown, `demo metered ${metered} bytes`)
    // Every request the player made was signed and answered (no 403/410).
    assert.deepEqual(w.failed, [])
    assert.deepEqual(w.errors, [])
    assert.match(await w.page.textContent('#demo-status') ?? '', /^playing/)
  })
})
