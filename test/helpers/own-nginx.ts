import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { parseLogLine } from '../../src/server/nginx/access-log-line.ts'
import { writeNginxConfig } from '../../src/server/nginx/nginx-config.ts'
import type { NginxConfigOptions } from '../../src/server/nginx/nginx-config.ts'
import { checkNginx } from '../../src/server/nginx/nginx-supervisor.ts'
import { freePort } from './own-redis.ts'
import { waitFor } from './wait.ts'

const NGINX = process.env.NGINX_BIN ?? 'nginx'
const MISSING = 'nginx with its js module is needed (Debian: apt-get install nginx libnginx-mod-http-js; .ci/run installs them)'

/** Whether nginx and its js module are installed (the engine's own check). */
export function nginxInstalled (): boolean {
  try {
    checkNginx(NGINX)
    return true
  } catch {
    return false
  }
}

/** True when nginx can run; otherwise skips the test, or fails it with `CI=true`. */
export function nginxOrSkip (t: TestContext): boolean {
  if (nginxInstalled()) return true
  if (process.env.CI === 'true') throw new Error(`${MISSING}: with CI=true this test must run`)
  t.skip(`skipped: ${MISSING}`)
  return false
}

/** An nginx of the test's own, with the nginx engine's configuration. */
export interface OwnNginx {
  url: string
  port: number
  accessLog: string
  /** The access log's lines, parsed. */
  lines (): Array<Record<string, unknown>>
}

/** Write the nginx engine's configuration for a test into `dir`; returns its path. */
export function writeTestConfig (dir: string, port: number, options: Pick<NginxConfigOptions, 'root' | 'signingSecret' | 'accessAllowCidrs' | 'trustedProxies' | 'locked' | 'openExtensions'>): string {
  return writeNginxConfig({
    ...options,
    host: '127.0.0.1',
    port,
    dir,
    accessLog: join(dir, 'access.log'),
    njsPath: new URL('../../nginx/streammeter.js', import.meta.url).pathname,
    // Started as root, nginx would run its workers as nobody, who cannot read the test's temp dirs.
    user: process.getuid?.() === 0 ? 'root' : undefined
  })
}

/** Render the configuration into a temp dir, start nginx on a free port, stop it after the test. */
export async function startOwnNginx (t: TestContext, options: Pick<NginxConfigOptions, 'root' | 'signingSecret' | 'accessAllowCidrs' | 'trustedProxies' | 'locked' | 'openExtensions'>): Promise<OwnNginx> {
  const dir = mkdtempSync(join(tmpdir(), 'sm-nginx-'))
  const port = await freePort()
  const accessLog = join(dir, 'access.log')
  const conf = writeTestConfig(dir, port, options)
  const child = spawn(NGINX, ['-p', dir, '-c', conf, '-e', join(dir, 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
  t.after(async () => {
    if (child.exitCode === null) {
      child.kill('SIGQUIT')
      await new Promise((resolve) => child.once('exit', resolve))
    }
    rmSync(dir, { recursive: true, force: true })
  })
  await waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`nginx exited ${child.exitCode}: ${stderr}`)
    return await fetch(`http://127.0.0.1:${port}/`).then(() => true, () => false)
  }, 5000, 'nginx to listen')
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    accessLog,
    lines: () => readFileSync(accessLog, 'utf8').split('\n').filter((l) => l !== '').map((l) => {
      const line = parseLogLine(l)
      if (line === undefined) throw new Error(`not an access-log line: ${l}`)
      return line as unknown as Record<string, unknown>
    })
  }
}
