import { spawn } from 'node:child_process'

/** How a child process ended and what it printed on stdout. */
export interface ChildRun {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
}

/**
 * Run `node <execArgv> <script> <args>` in a fresh process, stderr passed
 * through (progress shows live), stdout collected. Never rejects for a
 * non-zero exit: the caller reads `code`.
 */
export function runNode (script: string, args: readonly string[], options: { execArgv: readonly string[], cwd: string }): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...options.execArgv, script, ...args], {
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'inherit']
    })
    const chunks: Buffer[] = []
    child.stdout.on('data', (chunk: Buffer) => { chunks.push(chunk) })
    child.on('error', reject)
    child.on('close', (code, signal) => {
      resolve({ code, signal, stdout: Buffer.concat(chunks).toString('utf8') })
    })
  })
}

/** The last non-empty line of `text`, parsed as JSON; undefined when there is none or it is not JSON. */
export function lastJsonLine (text: string): unknown {
  const line = text.trimEnd().split('\n').at(-1)
  if (line === undefined || line === '') return undefined
  try {
    return JSON.parse(line)
  } catch {
    return undefined
  }
}
