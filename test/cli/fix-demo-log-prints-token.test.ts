import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { after, it } from 'node:test'
import { request } from 'undici'
import { signedPath } from '../../src/cli/sign.ts'
import { loadConfig } from '../../src/config/index.ts'
import { createLogger, startServer } from '../../src/server/index.ts'

/**
 * With SIGNING_SECRET set, the start-up log of the demo printed a signed
 * URL: a working token for an hour, in every log collector that keeps
 * start-up lines. It now says how to sign one (`streammeter sign …`);
 * without a secret the unsigned demo URL is still printed.
 */

const cwd = mkdtempSync(join(tmpdir(), 'sm-demo-log-'))
after(() => rmSync(cwd, { recursive: true, force: true }))
const SECRET = 'demo-log-secret-0123456789'

/** Start the real server on the demo media; returns its address and what it logged. */
async function demoServer (t: { after: (fn: () => Promise<void>) => void }, env: Record<string, string>): Promise<{ address: string, lines: Array<Record<string, unknown>> }> {
  const { config } = loadConfig({ env: { HOST: '127.0.0.1', PORT: '0', STORE_URL: 'memory:', ...env }, cwd })
  let text = ''
  const sink = new Writable({ write (chunk: Buffer, _enc, done) { text += chunk.toString(); done() } })
  const server = await startServer(config, { logger: createLogger('info', sink) })
  t.after(() => server.close())
  return { address: server.address, lines: text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>) }
}

it('with SIGNING_SECRET: no token in the log, but the command that signs a demo URL, which plays', async (t) => {
  const { address, lines } = await demoServer(t, { SIGNING_SECRET: SECRET })
  const all = JSON.stringify(lines)
  assert.ok(!/token=/.test(all), all)
  const demo = lines.find((l) => typeof l['msg'] === 'string' && l['msg'].startsWith('serving the bundled demo media'))
  assert.ok(demo !== undefined, all)
  assert.equal(demo['msg'], 'serving the bundled demo media; SIGNING_SECRET is set: sign a URL to play it with streammeter sign --uid demo --path /master.m3u8')
  assert.equal(demo['sign'], 'streammeter sign --uid demo --path /master.m3u8')
  assert.equal(demo['url'], undefined)

  // What the hint prints plays.
  const target = signedPath({ secret: SECRET, uid: 'demo', path: '/master.m3u8', expires: Math.floor(Date.now() / 1000) + 60 })
  const res = await request(`${address}${target}`)
  assert.equal(res.statusCode, 200)
  assert.match(await res.body.text(), /^#EXTM3U/)
})

it('without SIGNING_SECRET: the unsigned demo URL, which plays', async (t) => {
  const { address, lines } = await demoServer(t, {})
  const demo = lines.find((l) => l['msg'] === 'serving the bundled demo media; play this URL')
  assert.ok(demo !== undefined, JSON.stringify(lines))
  assert.equal(demo['url'], `${address}/master.m3u8?uid=demo`)
  const res = await request(String(demo['url']))
  assert.equal(res.statusCode, 200)
  await res.body.dump()
})
