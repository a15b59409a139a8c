import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { request } from 'undici'
import { main } from '../../src/cli/main.ts'
import type { CliOptions } from '../../src/cli/main.ts'
import type { Config, Env } from '../../src/config/index.ts'
import { SETTING_NAMES, flagOf } from '../../src/config/index.ts'
import { VERSION } from '../../src/version.ts'

const root = new URL('../..', import.meta.url).pathname
const cwd = mkdtempSync(join(tmpdir(), 'sm-cli-'))
after(() => rmSync(cwd, { recursive: true, force: true }))

interface Run {
  code: number
  out: string
  err: string
}

/** `main()` in-process, with captured output, an empty working directory and no real server. */
function run (argv: string[], env: Env = {}, options: CliOptions = {}): { done: Promise<Run>, output: () => Run } {
  const r: Run = { code: -1, out: '', err: '' }
  const done = main(argv, env, {
    cwd,
    stdout: { write: (s: string) => { r.out += s } },
    stderr: { write: (s: string) => { r.err += s } },
    startServer: () => assert.fail('the server must not be started'),
    exit: (code) => assert.fail(`unexpected forced exit ${code}`),
    ...options
  }).then((code) => {
    r.code = code
    return r
  })
  return { done, output: () => r }
}

async function runDone (argv: string[], env: Env = {}, options: CliOptions = {}): Promise<Run> {
  return await run(argv, env, options).done
}

/** Resolves once `check()` holds; the in-process server steps are promise hops, not timers. */
async function until (check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 2))
  assert.ok(check(), what)
}

describe('help, version and usage errors', () => {
  it('--help and -h: 0, on stdout', async () => {
    for (const flag of ['--help', '-h']) {
      const r = await runDone([flag])
      assert.equal(r.code, 0)
      assert.match(r.out, /Usage: streammeter <verb>/)
      assert.match(r.out, /serve[\s\S]*sign[\s\S]*sink/)
    }
  })

  it('--help on every verb: 0', async () => {
    for (const verb of ['serve', 'sign', 'sink']) {
      const r = await runDone([verb, '--help'])
      assert.equal(r.code, 0, verb)
      assert.match(r.out, new RegExp(`Usage: streammeter ${verb}`))
      assert.equal((await runDone(['help', verb])).out, r.out)
    }
  })

  it('serve --help lists every setting as a flag', async () => {
    const { out } = await runDone(['serve', '--help'])
    for (const name of SETTING_NAMES) {
      assert.ok(out.includes(`${flagOf(name)} (${name}`), `${name} missing from serve --help`)
    }
  })

  it('--version: 0, the package version', async () => {
    const r = await runDone(['--version'])
    assert.equal(r.code, 0)
    assert.equal(r.out, `${VERSION}\n`)
  })

  it('no verb, an unknown verb or an unknown top-level flag: 2', async () => {
    const none = await runDone([])
    assert.equal(none.code, 2)
    assert.match(none.err, /Usage:/)
    const unknown = await runDone(['frobnicate'])
    assert.equal(unknown.code, 2)
    assert.match(unknown.err, /unknown verb "frobnicate"/)
    const flag = await runDone(['--frob'])
    assert.equal(flag.code, 2)
    assert.match(flag.err, /unknown flag --frob/)
    assert.equal((await runDone(['help', 'nope'])).code, 2)
  })

  it('sign without a secret: 2, naming SIGNING_SECRET', async () => {
    const r = await runDone(['sign', '--uid', 'u', '--path', '/p'])
    assert.equal(r.code, 2)
    assert.match(r.err, /SIGNING_SECRET/)
  })
})

describe('serve', () => {
  it('a bad setting: 2, the message names it, the server is not started', async () => {
    const fromEnv = await runDone(['serve'], { TRAFFIC_MIN_BYTES: 'lots' })
    assert.equal(fromEnv.code, 2)
    assert.match(fromEnv.err, /^streammeter serve: TRAFFIC_MIN_BYTES: must be a non-negative integer/)
    const fromFlag = await runDone(['serve', '--port=http'])
    assert.equal(fromFlag.code, 2)
    assert.match(fromFlag.err, /PORT: .*\(from --port\)/)
    const unknownFlag = await runDone(['serve', '--traffic-min-byte', '1'])
    assert.equal(unknownFlag.code, 2)
    assert.match(unknownFlag.err, /--traffic-min-byte: unknown flag/)
  })

  it('starts the server with the loaded config and closes it once on SIGTERM: 0', async () => {
    const signals = new EventEmitter()
    let started: Config | undefined
    let closes = 0
    const r = run(['serve', '--port', '0', '--store-url', 'memory:'], { TRAFFIC_MIN_BYTES: '0' }, {
      signals,
      startServer: async (config) => {
        started = config
        return { address: 'http://127.0.0.1:1234', close: async () => { closes++ } }
      }
    })
    await until(() => r.output().err.includes('listening on http://127.0.0.1:1234'), 'server started')
    assert.equal(started?.port, 0)
    assert.equal(started?.storeUrl, 'memory:')
    assert.equal(started?.trafficMinBytes, 0)
    assert.equal(started?.origin.kind, 'demo')
    assert.match(r.output().err, /serving the bundled demo media/)
    signals.emit('SIGTERM', 'SIGTERM')
    const { code } = await r.done
    assert.equal(code, 0)
    assert.equal(closes, 1)
    assert.equal(signals.listenerCount('SIGTERM'), 0)
    assert.equal(signals.listenerCount('SIGINT'), 0)
  })

  it('a signal during start-up stops the server once it is up', async () => {
    const signals = new EventEmitter()
    let release!: () => void
    let closes = 0
    const r = run(['serve'], { STORE_URL: 'memory:' }, {
      signals,
      startServer: async () => {
        await new Promise<void>((resolve) => { release = resolve })
        return { address: 'x', close: async () => { closes++ } }
      }
    })
    await until(() => release !== undefined, 'start called')
    signals.emit('SIGINT', 'SIGINT')
    release()
    assert.equal((await r.done).code, 0)
    assert.equal(closes, 1)
  })

  it('a second signal during a slow stop forces exit 1', async () => {
    const signals = new EventEmitter()
    const exits: number[] = []
    let closes = 0
    const r = run(['serve'], { STORE_URL: 'memory:' }, {
      signals,
      exit: (code) => { exits.push(code) },
      startServer: async () => ({ address: 'x', close: () => { closes++; return new Promise<void>(() => {}) } })
    })
    await until(() => r.output().err.includes('listening'), 'server started')
    signals.emit('SIGTERM', 'SIGTERM')
    await until(() => closes === 1, 'close called')
    signals.emit('SIGINT', 'SIGINT')
    assert.deepEqual(exits, [1])
    assert.equal(closes, 1)
    assert.match(r.output().err, /SIGINT received again/)
  })

  it('a start-up failure: 1 with a clear message', async () => {
    const r = await runDone(['serve'], { STORE_URL: 'redis://127.0.0.1:6379' }, {
      signals: new EventEmitter(),
      startServer: async () => { throw Object.assign(new Error('listen EADDRINUSE: address already in use :::8080'), { code: 'EADDRINUSE' }) }
    })
    assert.equal(r.code, 1)
    assert.match(r.err, /streammeter serve: could not start: listen EADDRINUSE: address already in use :::8080\n/)
  })

  it('a store that cannot be opened: 1, from the real server, naming no secret', async () => {
    const r = await runDone(['serve', '--port', '0', '--host', '127.0.0.1'], { STORE_URL: 'sqlite:/etc/hostname/x.db', SIGNING_SECRET: 'pw-secret' }, {
      signals: new EventEmitter(),
      startServer: undefined
    })
    assert.equal(r.code, 1)
    assert.match(r.err, /streammeter serve: could not start: .*sqlite store/)
    assert.ok(!r.err.includes('pw-secret'), r.err)
  })

  it('ENGINE=nginx without nginx: 2, from the real server, naming the Debian packages', async () => {
    const r = await runDone(['serve', '--port', '0', '--host', '127.0.0.1', '--engine', 'nginx'], {
      STORE_URL: 'memory:', NGINX_BIN: join(cwd, 'no-nginx-here'), ENGINE_DIR: join(cwd, 'nginx')
    }, { signals: new EventEmitter(), startServer: undefined })
    assert.equal(r.code, 2)
    assert.match(r.err, /streammeter serve: nginx is not installed or does not run \(.*no-nginx-here\): apt-get install nginx libnginx-mod-http-js\n/)
  })

  it('a failing stop: 1', async () => {
    const signals = new EventEmitter()
    const r = run(['serve'], { STORE_URL: 'memory:' }, {
      signals,
      startServer: async () => ({ address: 'x', close: async () => { throw new Error('flush failed') } })
    })
    await until(() => r.output().err.includes('listening'), 'server started')
    signals.emit('SIGTERM', 'SIGTERM')
    const { code, err } = await r.done
    assert.equal(code, 1)
    assert.match(err, /stopping failed: flush failed/)
  })
})

describe('sink', () => {
  it('runs until SIGTERM: 0, and a bad port is 2', async () => {
    const signals = new EventEmitter()
    const r = run(['sink', '--port', '0', '--api-key', 'k'], {}, { signals })
    await until(() => r.output().err.includes('listening on '), 'sink started')
    const url = /listening on (\S+)/.exec(r.output().err)?.[1] ?? ''
    const res = await request(`${url}/usage`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer k' },
      body: JSON.stringify({ report_id: 'r1', traffic_details: [{ uid: 'a', total_bytes: 3 }] })
    })
    assert.equal(res.statusCode, 200)
    await res.body.dump()
    assert.match(r.output().out, /^report r1: 1 uids, 3 bytes\n$/)
    signals.emit('SIGTERM', 'SIGTERM')
    assert.equal((await r.done).code, 0)

    const bad = await runDone(['sink', '--port', '70000'])
    assert.equal(bad.code, 2)
    assert.match(bad.err, /--port: must be a TCP port number/)
  })
})

describe('as a process', () => {
  function spawnCli (args: string[], env: Env = {}): Promise<Run> {
    return new Promise((resolve) => {
      // tsx by its resolved URL: the child runs in a scratch directory, from
      // which a bare `tsx` would not resolve.
      execFile(process.execPath, ['--import', import.meta.resolve('tsx'), join(root, 'src/cli/main.ts'), ...args], {
        cwd,
        env: { ...process.env, ...env },
        timeout: 20_000
      }, (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1
        resolve({ code, out: stdout, err: stderr })
      })
    })
  }

  it('sets the exit status: --help 0, bad setting 2, unknown verb 2, sign without secret 2', async () => {
    const [help, bad, unknown, sign] = await Promise.all([
      spawnCli(['--help']),
      spawnCli(['serve'], { TRAFFIC_REPORT_INTERVAL: 'soon' }),
      spawnCli(['frobnicate']),
      spawnCli(['sign', '--uid', 'u', '--path', '/p'], { SIGNING_SECRET: '' })
    ])
    assert.equal(help.code, 0)
    assert.match(help.out, /Usage: streammeter/)
    assert.equal(bad.code, 2)
    assert.match(bad.err, /TRAFFIC_REPORT_INTERVAL: must be a positive number of seconds/)
    assert.equal(unknown.code, 2)
    assert.equal(sign.code, 2)
    assert.match(sign.err, /SIGNING_SECRET/)
  })

  it('bin/streammeter.js runs the build, or says to build first', async () => {
    const built = existsSync(join(root, 'dist/cli/main.js'))
    const r = await new Promise<Run>((resolve) => {
      execFile(process.execPath, [join(root, 'bin/streammeter.js'), '--version'], { cwd, timeout: 20_000 }, (error, stdout, stderr) => {
        resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, out: stdout, err: stderr })
      })
    })
    if (built) {
      assert.equal(r.code, 0, r.err)
      assert.equal(r.out, `${VERSION}\n`)
    } else {
      assert.equal(r.code, 1)
      assert.match(r.err, /npm run build/)
    }
  })
})
