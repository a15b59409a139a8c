import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { after, describe, it } from 'node:test'
import { request } from 'undici'
import { signedQuery } from '../../src/server/access/url-signer.ts'
import { browserSuite, closeBrowser, openPage } from '../helpers/browser.ts'
import { startTestServer } from '../helpers/test-server.ts'

// Each carrier sets its own flag if it ever runs as markup.
const payload = (n: number): string => `<img src=x onerror=window.__xss=${n}>`
const UID = payload(1)
const FILE = `${payload(2)}.mp4`
const XFF = payload(3)
const SESSION = payload(4)
const SECRET = 'xss-signing-secret'

const root = mkdtempSync(join(tmpdir(), 'sm-monitor-xss-'))
// Large enough that a client that does not read keeps it in the active transfers.
writeFileSync(join(root, FILE), Buffer.alloc(32 * 1048576, 1))
writeFileSync(join(root, 'small.ts'), Buffer.alloc(10_000, 1))
after(() => rmSync(root, { recursive: true, force: true }))
after(closeBrowser)

const ADMIN = 'xss-admin-token'
const signed = (path: string): string => `/${encodeURIComponent(path)}?${signedQuery({ secret: SECRET, uid: UID, path, expires: Math.floor(Date.now() / 1000) + 600 })}`

describe('the /monitor page shows what clients sent as text (the stored XSS of the service this replaces)', browserSuite(), () => {
  it('a uid, a path, an X-Forwarded-For, a session id and a refused path carrying markup are shown as text and never run', async (t) => {
    // A trusted proxy on loopback closes the admin endpoints to everyone without a token.
    const server = await startTestServer({ root, signingSecret: SECRET, trustedProxies: ['127.0.0.1'], adminToken: ADMIN, startCollector: true, shutdownGrace: 2 })
    t.after(() => server.close())
    const headers = { 'x-forwarded-for': XFF, 'x-session-id': SESSION }
    // One finished response (the uid reaches the top list) and one held open
    // by a client that does not read (the path stays in the active transfers).
    const small = await request(`${server.url}${signed('small.ts')}`, { headers })
    assert.equal(small.statusCode, 200)
    await small.body.dump()
    const held = await request(`${server.url}${signed(FILE)}`, { headers })
    assert.equal(held.statusCode, 200)
    // Hung up at the end of the test, before the server closes; otherwise close() waits out the grace for it.
    const hangUp = (): void => { (held.body as unknown as Readable).destroy() }
    t.after(hangUp)
    // A refused request whose path carries markup: listed in the refused-requests panel.
    const refused = await request(`${server.url}/${encodeURIComponent(payload(5))}.ts?uid=x&expires=1&token=0`, { headers })
    assert.equal(refused.statusCode, 403)
    await refused.body.dump()

    const w = await openPage(t, { username: 'operator', password: ADMIN })
    await w.page.goto(`${server.url}/monitor`)
    const transfer = await w.page.waitForSelector('#transfer-rows tr td[data-bytes]', { timeout: 5000 })
    assert.ok(Number(await transfer.getAttribute('data-bytes')) > 0)
    await w.page.waitForSelector('#top-rows tr', { timeout: 5000 })

    const transferCells = await w.page.$$eval('#transfer-rows tr td', (tds) => tds.slice(0, 4).map((td) => td.textContent))
    // X-Forwarded-For: not an address, so the walk stops at the trusted peer (client-ip.ts).
    assert.deepEqual(transferCells, [UID, `/${FILE}`, '127.0.0.1', SESSION])
    assert.equal(await w.page.textContent('#top-rows tr td'), UID)
    assert.equal(await w.page.getAttribute('#top-rows tr', 'data-uid'), UID)
    await w.page.waitForSelector('#denial-rows tr', { timeout: 5000 })
    const denialCells = await w.page.$$eval('#denial-rows tr td', (tds) => tds.slice(1).map((td) => td.textContent))
    assert.deepEqual(denialCells, ['bad signature', '403', `/${payload(5)}.ts`, '127.0.0.1'])
    assert.equal(await w.page.textContent('#denial-counts'), 'bad signature 1')
    // Text, not elements: no <img> was created anywhere in the tables …
    assert.equal(await w.page.locator('#transfer-rows img, #top-rows img, #denial-rows img, main img').count(), 0)
    // … nothing ran, no dialog opened, and the CSP had nothing to block.
    await new Promise((resolve) => setTimeout(resolve, 1200)) // a few more live updates
    assert.equal(await w.page.evaluate(() => typeof (globalThis as any).__xss), 'undefined')
    assert.deepEqual(w.dialogs, [])
    assert.deepEqual(w.errors, [])
    // The JSON carries the values as they are (JSON-escaped), for the page to show as text.
    const doc = await (await request(`${server.url}/monitor/api/snapshot`, { headers: { authorization: `Bearer ${ADMIN}` } })).body.json() as { active_transfers: { transfers: Array<{ uid: string, path: string, session_id: string }> } }
    assert.deepEqual(doc.active_transfers.transfers.map((x) => [x.uid, x.path, x.session_id]), [[UID, `/${FILE}`, SESSION]])
    hangUp()
  })
})
