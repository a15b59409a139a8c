import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, it } from 'node:test'
import { loadConfig } from '../../src/config/index.ts'
import { ConfigError } from '../../src/errors.ts'
import { runCli } from '../helpers/cli-run.ts'

/**
 * `--traffic-flush-interval 3000000` was accepted: 3·10⁹ ms overflows a Node
 * timer (2^31 − 1 ms at most), which then fires after 1 ms, so the collector
 * flushed every millisecond. Durations now have bounds, none past what a
 * timer holds, and a value past one exits 2 naming the setting and the bound.
 */

const cwd = mkdtempSync(join(tmpdir(), 'sm-bounds-'))
after(() => rmSync(cwd, { recursive: true, force: true }))

/** Seconds past which a Node timer overflows. */
const TIMER_MAX_SECONDS = (2 ** 31 - 1) / 1000

const DURATIONS = ['ORIGIN_TIMEOUT', 'TRAFFIC_REPORT_INTERVAL', 'TRAFFIC_ACCUMULATOR_TIMEOUT', 'TRAFFIC_FLUSH_INTERVAL', 'TRAFFIC_REPORT_TIMEOUT', 'SHUTDOWN_GRACE']

it('serve --traffic-flush-interval 3000000 exits 2, naming the setting and its bound', async () => {
  const { code, stderr } = await runCli(['serve', '--traffic-flush-interval', '3000000'], { STORE_URL: 'memory:', PORT: '0' }, cwd, 8000)
  assert.equal(code, 2)
  assert.equal(stderr, 'streammeter serve: TRAFFIC_FLUSH_INTERVAL: must be at most 3600 seconds, got "3000000" (from --traffic-flush-interval)\n')
})

it('no duration takes a value a timer cannot hold', () => {
  for (const name of DURATIONS) {
    let err: unknown
    try {
      loadConfig({ env: { [name]: String(Math.ceil(TIMER_MAX_SECONDS)) }, cwd })
    } catch (e) {
      err = e
    }
    assert.ok(err instanceof ConfigError, `${name} accepted ${Math.ceil(TIMER_MAX_SECONDS)} s`)
    const bound = Number(/must be at most (\d+) seconds/.exec(err.message)?.[1])
    assert.ok(bound > 0 && bound <= TIMER_MAX_SECONDS, err.message)
    assert.doesNotThrow(() => loadConfig({ env: { [name]: String(bound) }, cwd }), `${name} refused its own bound`)
  }
})

it('the metering library refuses a duration a timer cannot hold too', async () => {
  const { resolveMeterOptions } = await import('../../src/meter/index.ts')
  assert.throws(() => resolveMeterOptions({ flushInterval: 3_000_000 }), /flushInterval must be at most 2147483 seconds/)
  assert.throws(() => resolveMeterOptions({ reportInterval: 2147484 }), /reportInterval must be at most/)
  assert.equal(resolveMeterOptions({ reportInterval: 2147483 }).reportInterval, 2147483)
})
