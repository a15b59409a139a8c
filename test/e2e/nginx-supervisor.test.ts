import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { request } from 'undici'
import { EngineError } from '../../src/errors.ts'
import { silentLogger } from '../../src/meter/index.ts'
import { NginxSupervisor, checkNginx } from '../../src/server/nginx/nginx-supervisor.ts'
import { nginxInstalled, nginxOrSkip, writeTestConfig } from '../helpers/own-nginx.ts'
import { freePort } from '../helpers/own-redis.ts'
import { waitFor } from '../helpers/wait.ts'

interface Rig { dir: string, port: number, conf: string, url: string, supervisor: NginxSupervisor }

async function rig (t: TestContext): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'sm-nginx-sup-'))
  writeFileSync(join(dir, 'a.ts'), 'first root\n')
  const port = await freePort()
  const conf = writeTestConfig(dir, port, { root: dir, signingSecret: undefined })
  const url = `http://127.0.0.1:${port}`
  const supervisor = new NginxSupervisor({
    dir, conf, logger: silentLogger, restartDelay: 100, ready: serves(url, 'first root\n')
  })
  t.after(async () => {
    await supervisor.stop(2000)
    rmSync(dir, { recursive: true, force: true })
  })
  return { dir, port, conf, url, supervisor }
}

/** A GET on a fresh connection: a reloaded nginx's old workers still answer on the ones they hold. */
async function get (url: string): Promise<{ status: number, body: string }> {
  const res = await request(url, { reset: true })
  return { status: res.statusCode, body: await res.body.text() }
}

const serves = (url: string, body: string) => async (): Promise<boolean> =>
  await get(`${url}/a.ts`).then((r) => r.body === body, () => false)

describe('the nginx supervisor', () => {
  it('starts nginx, brings it back after a kill -9, and stops it gracefully', async (t) => {
    if (!nginxOrSkip(t)) return
    const { url, supervisor } = await rig(t)
    await supervisor.start()
    await waitFor(serves(url, 'first root\n'), 5000, 'nginx to serve')
    const first = supervisor.pid
    assert.ok(first !== undefined)
    process.kill(first, 'SIGKILL')
    await waitFor(() => supervisor.restarts === 1 && supervisor.pid !== undefined && supervisor.pid !== first, 5000, 'a restart')
    // The killed master's workers may hold the port a moment: the new one binds when they are gone.
    await waitFor(serves(url, 'first root\n'), 10_000, 'nginx to serve again')
    await supervisor.stop(5000)
    assert.equal(supervisor.state, 'stopped')
    assert.equal(supervisor.pid, undefined)
    await assert.rejects(get(`${url}/a.ts`))
  })

  it('reloads a changed configuration, and keeps serving the old one when the new one is refused', async (t) => {
    if (!nginxOrSkip(t)) return
    const { dir, port, conf, url, supervisor } = await rig(t)
    await supervisor.start()
    await waitFor(serves(url, 'first root\n'), 5000, 'nginx to serve')
    const other = mkdtempSync(join(tmpdir(), 'sm-nginx-other-'))
    t.after(() => rmSync(other, { recursive: true, force: true }))
    writeFileSync(join(other, 'a.ts'), 'second root\n')
    writeTestConfig(dir, port, { root: other, signingSecret: undefined })
    supervisor.reload()
    await waitFor(serves(url, 'second root\n'), 5000, 'the new root to be served')
    // The old worker accepts a little longer while it winds down: wait until
    // the master has only its new worker.
    await waitFor(() => childrenOf(supervisor.pid ?? 0) === 1, 5000, 'the old worker to exit')
    writeFileSync(conf, 'this is no nginx configuration;\n')
    assert.throws(() => { supervisor.reload() }, EngineError)
    assert.equal((await get(`${url}/a.ts`)).body, 'second root\n')
  })

  it('stops an nginx a dead previous run left holding the port, then serves with its own', async (t) => {
    if (!nginxOrSkip(t)) return
    const { dir, conf, url, supervisor } = await rig(t)
    // The previous run's nginx: not our child, its pid file in the prefix.
    const stale = spawn('nginx', ['-p', dir, '-c', conf, '-e', join(dir, 'error.log')], { stdio: 'ignore', detached: true })
    stale.unref()
    t.after(() => { try { process.kill(-(stale.pid ?? 0), 'SIGKILL') } catch {} }) // its workers too
    await waitFor(serves(url, 'first root\n'), 5000, 'the stale nginx to serve')
    await supervisor.start()
    await waitFor(serves(url, 'first root\n'), 5000, 'our nginx to serve')
    assert.notEqual(supervisor.pid, stale.pid)
    await waitFor(() => stale.exitCode !== null || !alive(stale.pid ?? 0), 5000, 'the stale nginx to exit')
  })

  it('refuses to start when the port is held by someone else', async (t) => {
    if (!nginxOrSkip(t)) return
    const { port, supervisor } = await rig(t)
    const holder = createServer((_req, res) => { res.end('someone else') })
    await new Promise<void>((resolve) => holder.listen(port, '127.0.0.1', resolve))
    t.after(() => new Promise<void>((resolve) => holder.close(() => resolve())))
    // The probe sees an answer, but not nginx's: it asks for nginx's own file.
    await assert.rejects(supervisor.start(), EngineError)
    assert.equal(supervisor.pid, undefined)
  })

  it('names the Debian packages when nginx or its js module is missing', () => {
    assert.throws(() => { checkNginx('/nonexistent/nginx') }, (err: Error) =>
      err instanceof EngineError && err.message.includes('apt-get install nginx libnginx-mod-http-js'))
    if (!nginxInstalled()) return
    assert.throws(() => { checkNginx('nginx', '/nonexistent/ngx_http_js_module.so') }, (err: Error) =>
      err instanceof EngineError && /js module is not installed/.test(err.message))
  })
})

/** How many processes have `pid` as their parent. */
function childrenOf (pid: number): number {
  let n = 0
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) n++
    } catch {}
  }
  return n
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
