import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'

const main = new URL('../../src/cli/main.ts', import.meta.url).pathname

/** `streammeter serve` in its own process (for signals and memory). */
export interface CliServer {
  url: string
  child: ChildProcess
  /** Everything the process wrote to stdout and stderr so far. */
  output: () => string
  /** Resolves with the exit code once the process ended. */
  exited: Promise<number | null>
}

/**
 * Start `streammeter serve` with `env` (settings as environment variables) on
 * 127.0.0.1 and a free port; resolves once it listens.
 */
export async function startCliServer (env: Record<string, string>, cwd?: string): Promise<CliServer> {
  const child = spawn(process.execPath, ['--import', 'tsx', main, 'serve'], {
    cwd,
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  child.stdout?.on('data', (c: Buffer) => { out += c.toString() })
  child.stderr?.on('data', (c: Buffer) => { out += c.toString() })
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${out}`)), 20_000)
    const check = (): void => {
      const m = /listening on (http:\/\/\S+)/.exec(out)
      if (m?.[1] !== undefined) {
        clearTimeout(timer)
        resolve(m[1])
      }
    }
    child.stderr?.on('data', check)
    exited.then((code) => {
      clearTimeout(timer)
      reject(new Error(`server exited with ${String(code)}:\n${out}`))
    }, reject)
  })
  return { url, child, output: () => out, exited }
}

/** Resident set size of a process in bytes (Linux /proc). */
export async function rssOf (pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises')
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0)
  return kb * 1024
}
