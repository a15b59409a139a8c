import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, it } from 'node:test'
import { runCli } from '../helpers/cli-run.ts'

/**
 * Secrets are single tokens (docs/limits.md#settings). Only leading and trailing
 * whitespace was refused, so `SIGNING_SECRET="abc def"` (an unquoted paste,
 * two values run together) started a proxy whose every check then failed.
 * Any whitespace anywhere now exits 2, and the message never repeats the value.
 */

const cwd = mkdtempSync(join(tmpdir(), 'sm-secret-ws-'))
after(() => rmSync(cwd, { recursive: true, force: true }))

const VALUE = 'hunter2-first'

for (const [name, flag] of [['SIGNING_SECRET', '--signing-secret'], ['ADMIN_TOKEN', '--admin-token'], ['TRAFFIC_API_KEY', '--traffic-api-key']] as const) {
  it(`${name} with whitespace inside exits 2 without echoing it`, async () => {
    const fromEnv = await runCli(['serve'], { STORE_URL: 'memory:', PORT: '0', [name]: `${VALUE} second` }, cwd, 8000)
    assert.equal(fromEnv.code, 2)
    assert.equal(fromEnv.stderr, `streammeter serve: ${name}: must be a single token, without spaces or other whitespace (from the environment)\n`)
    // A no-break space looks like nothing at all in most terminals.
    const fromFlag = await runCli(['serve', flag, `${VALUE}\u00a0second`], { STORE_URL: 'memory:', PORT: '0' }, cwd, 8000)
    assert.equal(fromFlag.code, 2)
    assert.equal(fromFlag.stderr, `streammeter serve: ${name}: must be a single token, without spaces or other whitespace (from ${flag})\n`)
    assert.ok(!(fromEnv.stdout + fromFlag.stdout).includes('hunter2'))
  })
}
