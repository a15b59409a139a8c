import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { closeSync, openSync, readFileSync } from 'node:fs'

/** How a process ended. */
export interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
}

/** A process this benchmark started and must stop. */
export interface Managed {
  readonly name: string
  readonly pid: number
  readonly child: ChildProcess
  /** File that receives its stdout and stderr (servers), or undefined (stdout piped). */
  readonly logPath: string | undefined
  /** Resolves when it has exited. */
  readonly exited: Promise<Exit>
  /** Its whole stdout once it has closed, when started without a log file; '' otherwise. */
  readonly stdout: Promise<string>
}

/** Still running: no exit observed yet. */
export function isRunning (p: Managed): boolean {
  return p.child.exitCode === null && p.child.signalCode === null
}

/** The last `chars` characters of a process's log, for error messages. */
export function logTail (p: Managed, chars = 2000): string {
  if (p.logPath === undefined) return ''
  try {
    return readFileSync(p.logPath, 'utf8').slice(-chars).trimEnd()
  } catch {
    return ''
  }
}

/**
 * Every process the benchmark starts, so that each one is stopped by its PID
 * on success, on failure and on Ctrl-C alike ({@link stopAll}), and none is
 * left holding a core or a port.
 */
export class ProcessGroup {
  readonly #procs = new Set<Managed>()

  /**
   * Start `command args` with its output going to `logPath` (or stdout piped
   * when `logPath` is undefined, for wrk). `taskset -c N cmd` execs `cmd`,
   * so the PID is the target's own.
   * @throws when the executable cannot be started
   */
  start (name: string, command: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv, cwd?: string, logPath?: string }): Managed {
    const fd = options.logPath === undefined ? undefined : openSync(options.logPath, 'a')
    let child: ChildProcess
    try {
      child = spawn(command, args, {
        cwd: options.cwd,
        env: options.env ?? process.env,
        stdio: ['ignore', fd ?? 'pipe', fd ?? 'inherit']
      })
    } finally {
      // The child holds its own copy of the descriptor.
      if (fd !== undefined) closeSync(fd)
    }
    if (child.pid === undefined) {
      // spawn reports ENOENT and the like on 'error', asynchronously; without a PID there is nothing to manage.
      child.once('error', () => {})
      throw new Error(`could not start ${name}: ${command} ${args.join(' ')}`)
    }
    const exited = new Promise<Exit>((resolve) => {
      child.once('exit', (code, signal) => { resolve({ code, signal }) })
    })
    const stdout = new Promise<string>((resolve) => {
      const out = child.stdout
      if (out === null) {
        resolve('')
        return
      }
      const chunks: Buffer[] = []
      out.on('data', (c: Buffer) => { chunks.push(c) })
      // 'close' comes after the last 'data', whereas 'exit' may come before it.
      out.once('close', () => { resolve(Buffer.concat(chunks).toString('utf8')) })
    })
    const managed: Managed = { name, pid: child.pid, child, logPath: options.logPath, exited, stdout }
    this.#procs.add(managed)
    exited.then(() => { this.#procs.delete(managed) })
    return managed
  }

  /**
   * Send `signal` to `p` and wait up to `graceMs` for it to exit, then
   * SIGKILL it. Resolves how it exited. A no-op for a process that has
   * already exited (its PID may belong to someone else by now).
   */
  async stop (p: Managed, signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<Exit> {
    if (isRunning(p)) {
      p.child.kill(signal)
      const timer = setTimeout(() => { if (isRunning(p)) p.child.kill('SIGKILL') }, graceMs)
      try {
        return await p.exited
      } finally {
        clearTimeout(timer)
      }
    }
    return await p.exited
  }

  /**
   * Stop every process still running, each by its own PID, newest first (so
   * the proxies go before the origin they use). Idempotent.
   */
  async stopAll (graceMs = 5_000): Promise<void> {
    for (const p of [...this.#procs].reverse()) await this.stop(p, 'SIGTERM', graceMs)
  }
}
