import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { request } from 'undici'
import { startCliServer } from '../helpers/cli-server.ts'
import { runCli } from '../helpers/cli-run.ts'

/**
 * An orchestrator's stray `ORIGIN_*`/`TRAFFIC_*` variable used to stop the
 * proxy from starting at all (exit 2). It is now one warning line at start
 * (docs/configuration.md#where-settings-come-from); unknown flags and unknown keys in `.env` still exit 2.
 */

const cwd = mkdtempSync(join(tmpdir(), 'sm-unknown-env-'))
after(() => rmSync(cwd, { recursive: true, force: true }))

/** `streammeter serve …` that is expected to stop by itself. */
function runServe (args: string[], dir: string): ReturnType<typeof runCli> {
  return runCli(['serve', ...args], { HOST: '127.0.0.1', PORT: '0', STORE_URL: 'memory:' }, dir)
}

describe('an unknown environment variable with one of our prefixes', () => {
  it('is one warning line naming it and the setting it may be a typo of; the proxy starts and serves', async (t) => {
    const server = await startCliServer({ STORE_URL: 'memory:', ORIGIN_CPU: '4', TRAFFIC_FOO: 'x', LOG_LEVEL: 'silent' })
    t.after(async () => {
      server.child.kill('SIGTERM')
      await server.exited
    })
    const res = await request(`${server.url}/health`)
    assert.equal(res.statusCode, 200)
    await res.body.dump()
    const warnings = server.output().split('\n').filter((line) => line.includes('warning'))
    assert.deepEqual(warnings.sort(), [
      'streammeter serve: warning: ORIGIN_CPU is not a setting and is ignored (did you mean ORIGIN_URL?)',
      'streammeter serve: warning: TRAFFIC_FOO is not a setting and is ignored'
    ])
    server.child.kill('SIGTERM')
    assert.equal(await server.exited, 0)
  })

  it('never repeats its value (it may be a mistyped secret)', async (t) => {
    const server = await startCliServer({ STORE_URL: 'memory:', SIGNING_SECRETS: 'hunter2-secret', LOG_LEVEL: 'silent' })
    t.after(async () => {
      server.child.kill('SIGTERM')
      await server.exited
    })
    assert.match(server.output(), /warning: SIGNING_SECRETS is not a setting and is ignored \(did you mean SIGNING_SECRET\?\)/)
    assert.ok(!server.output().includes('hunter2'), server.output())
  })
})

describe('typos of every setting family are caught', () => {
  it('the limits added for hostile clients too (SEND_, PLAYLIST_, PUBLIC_, MAX_TRANSFERS_)', async () => {
    const { loadConfig } = await import('../../src/config/index.ts')
    const { warnings } = loadConfig({ env: { SEND_TIMEOUTS: '5', PLAYLIST_MAX_BYTE: '1', PUBLIC_HOST: 'a', MAX_TRANSFERS_PER_IPS: '2', MAX_OLD_SPACE: '1' } })
    assert.deepEqual(warnings.map((w) => w.message).sort(), [
      'MAX_TRANSFERS_PER_IPS is not a setting and is ignored (did you mean MAX_TRANSFERS_PER_IP?)',
      'PLAYLIST_MAX_BYTE is not a setting and is ignored (did you mean PLAYLIST_MAX_BYTES?)',
      'PUBLIC_HOST is not a setting and is ignored (did you mean PUBLIC_HOSTS?)',
      'SEND_TIMEOUTS is not a setting and is ignored (did you mean SEND_TIMEOUT?)'
    ])
  })
})

describe('what still stops the start (exit 2)', () => {
  it('an unknown key in .env', async () => {
    const dir = mkdtempSync(join(cwd, 'dotenv-'))
    writeFileSync(join(dir, '.env'), 'ORIGIN_CPU=4\n')
    const { code, stderr } = await runServe([], dir)
    assert.equal(code, 2)
    assert.equal(stderr, 'streammeter serve: ORIGIN_CPU: unknown setting (in .env) (did you mean ORIGIN_URL?)\n')
  })

  it('an unknown flag', async () => {
    const { code, stderr } = await runServe(['--origin-cpu', '4'], cwd)
    assert.equal(code, 2)
    assert.match(stderr, /^streammeter serve: --origin-cpu: unknown flag \(did you mean --origin-url\?\); see streammeter serve --help\n$/)
  })
})
