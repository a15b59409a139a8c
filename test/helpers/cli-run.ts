import { spawn } from 'node:child_process'

const main = new URL('../../src/cli/main.ts', import.meta.url).pathname
/** tsx by its resolved URL, so that the child finds it from any working directory. */
const tsx = import.meta.resolve('tsx')

/** How a CLI run that ended by itself went. */
export interface CliRun {
  code: number | null
  stdout: string
  stderr: string
}

/**
 * `streammeter <args…>` as a child process with only `env` (and PATH) in its
 * environment, in `cwd`; resolves once it has exited. For runs that end by
 * themselves (usage and configuration errors); a server is started with
 * `startCliServer` instead. A run still going after `timeoutMs` (a server
 * that should have refused to start) is killed: its code is then null.
 */
export function runCli (args: readonly string[], env: Record<string, string>, cwd: string, timeoutMs = 20_000): Promise<CliRun> {
  const child = spawn(process.execPath, ['--import', tsx, main, ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => { stdout += c.toString() })
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  return new Promise((resolve) => child.on('close', (code) => {
    clearTimeout(timer)
    resolve({ code, stdout, stderr })
  }))
}
