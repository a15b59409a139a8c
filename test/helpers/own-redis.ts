import { spawn, spawnSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { answersPing } from './redis.ts'

/** True when `redis-server` is on PATH. */
export const hasRedisServer = spawnSync('redis-server', ['--version']).status === 0

/**
 * Options for a `describe` whose tests start redis-server processes of their
 * own: skipped without `redis-server`, except in CI (`CI=true`), where its
 * tests run and fail.
 */
export const ownRedisSuite: { skip?: string } = hasRedisServer || process.env.CI === 'true'
  ? {}
  : { skip: 'redis-server is not installed; set CI=true to make this a failure' }

/** Options of {@link OwnRedis.start}. */
export interface OwnRedisOptions {
  /**
   * More `redis-server` arguments, after the defaults (a later one wins):
   * e.g. `['--appendonly', 'no']`, `['--replicaof', '127.0.0.1', '6380']`.
   */
  args?: string[]
}

/**
 * A redis-server of the test's own, on a free port, that the test may stop
 * and start again. By default it keeps its data across a restart (append-only
 * file, fsync on every write), so a test can tell what Redis still holds from
 * what the proxy kept in memory.
 */
export class OwnRedis {
  readonly port: number
  /** `redis://[:password@]127.0.0.1:<port>` (with the `--requirepass` of its arguments). */
  readonly url: string
  /** Its working directory: the AOF and RDB files. */
  readonly dir: string
  readonly #args: readonly string[]
  #child: ChildProcess | undefined
  #log = ''

  private constructor (port: number, args: readonly string[]) {
    this.port = port
    const password = args[args.lastIndexOf('--requirepass') + 1]
    this.url = `redis://${args.includes('--requirepass') ? `:${password ?? ''}@` : ''}127.0.0.1:${port}`
    this.dir = mkdtempSync(join(tmpdir(), 'sm-redis-'))
    this.#args = args
  }

  /** Start one on a free port; `redis-server` must be on PATH (the CI installs it). */
  static async start (options: OwnRedisOptions = {}): Promise<OwnRedis> {
    const redis = new OwnRedis(await freePort(), options.args ?? [])
    await redis.resume()
    return redis
  }

  /** Its process id while it runs. */
  get pid (): number | undefined {
    return this.#child?.pid
  }

  /** What it printed so far. */
  get log (): string {
    return this.#log
  }

  /** Start the server (again), with the data it had. Resolves when it answers PING. */
  async resume (): Promise<void> {
    if (this.#child !== undefined) return
    const child = spawn('redis-server', [
      '--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir,
      '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', ...this.#args
    ], { stdio: ['ignore', 'pipe', 'pipe'] })
    child.stdout?.on('data', (c: Buffer) => { this.#log += c.toString() })
    child.stderr?.on('data', (c: Buffer) => { this.#log += c.toString() })
    this.#child = child
    const deadline = Date.now() + 10_000
    while (!await answersPing(this.url, 500)) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`redis-server did not start:\n${this.#log}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }

  /** Stop the server (SIGTERM: it writes its file and exits). Resolves once it has exited. */
  async stop (): Promise<void> {
    const child = this.#child
    if (child === undefined) return
    this.#child = undefined
    if (child.exitCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGTERM')
    await exited
  }

  /** SIGKILL: a crash, nothing written on the way out. Resolves once it has exited; `resume()` restarts it from its files. */
  async kill (): Promise<void> {
    const child = this.#child
    if (child === undefined) return
    this.#child = undefined
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGKILL')
    await exited
  }

  /** Freeze it (SIGSTOP) or let it go on (SIGCONT): a server that holds its connections and answers nothing. */
  pause (paused: boolean): void {
    this.#child?.kill(paused ? 'SIGSTOP' : 'SIGCONT')
  }

  /** Stop it and remove its files. */
  async destroy (): Promise<void> {
    this.pause(false) // a stopped process ignores SIGTERM until it runs again
    await this.stop()
    rmSync(this.dir, { recursive: true, force: true })
  }
}

/** A TCP port nothing listens on right now. */
export async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}
