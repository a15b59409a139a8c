import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { freePort } from './own-redis.ts'

/** Options of {@link OwnSentinel.start}. */
export interface OwnSentinelOptions {
  /** The master to monitor (on 127.0.0.1). */
  masterPort: number
  /** @default 'mymaster' */
  name?: string
  /** A master unanswered this long is down. @default 1000 */
  downAfterMs?: number
  /**
   * Sentinel's failover timeout; it also waits this long before it "fixes" a
   * replica that replicates from another address than the master's (a test's
   * relay). @default 60000
   */
  failoverTimeoutMs?: number
  /** The Sentinel's own password (`requirepass`). @default none */
  password?: string
  /** The master's password, for the Sentinel to log in to it (`sentinel auth-pass`). @default none */
  masterPassword?: string
}

/**
 * One Redis Sentinel of the test's own (`redis-server <conf> --sentinel`) on
 * a free port, monitoring one master with a quorum of 1: it alone decides a
 * failover. Start the master's replicas first: the Sentinel learns them from
 * the master's INFO.
 */
export class OwnSentinel {
  readonly port: number
  readonly name: string
  readonly #dir: string
  readonly #child: ChildProcess
  readonly #password: string | undefined
  #log = ''

  private constructor (port: number, name: string, dir: string, child: ChildProcess, password: string | undefined) {
    this.port = port
    this.name = name
    this.#dir = dir
    this.#child = child
    this.#password = password
    child.stdout?.on('data', (c: Buffer) => { this.#log += c.toString() })
    child.stderr?.on('data', (c: Buffer) => { this.#log += c.toString() })
  }

  static async start (options: OwnSentinelOptions): Promise<OwnSentinel> {
    const port = await freePort()
    const name = options.name ?? 'mymaster'
    const dir = mkdtempSync(join(tmpdir(), 'sm-sentinel-'))
    const conf = join(dir, 'sentinel.conf')
    writeFileSync(conf, [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor ${name} 127.0.0.1 ${options.masterPort} 1`,
      `sentinel down-after-milliseconds ${name} ${options.downAfterMs ?? 1000}`,
      `sentinel failover-timeout ${name} ${options.failoverTimeoutMs ?? 60_000}`,
      ...options.password === undefined ? [] : [`requirepass ${options.password}`],
      ...options.masterPassword === undefined ? [] : [`sentinel auth-pass ${name} ${options.masterPassword}`],
      ''
    ].join('\n'))
    const child = spawn('redis-server', [conf, '--sentinel'], { stdio: ['ignore', 'pipe', 'pipe'] })
    const sentinel = new OwnSentinel(port, name, dir, child, options.password)
    const deadline = Date.now() + 10_000
    while (await sentinel.masterPort().catch(() => undefined) !== options.masterPort) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`redis sentinel did not start:\n${sentinel.#log}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    return sentinel
  }

  /** Everything it logged (+sdown, +failover-end…). */
  get log (): string {
    return this.#log
  }

  /** The port of the master it names now (SENTINEL GET-MASTER-ADDR-BY-NAME). */
  async masterPort (): Promise<number> {
    return Number((await this.#ask('get-master-addr-by-name', this.name) as [string, string])[1])
  }

  /** How many replicas of the master it knows. */
  async replicas (): Promise<number> {
    return (await this.#ask('replicas', this.name) as unknown[]).length
  }

  /** Stop it and remove its files. */
  async destroy (): Promise<void> {
    if (this.#child.exitCode === null && this.#child.signalCode === null) {
      const exited = new Promise((resolve) => this.#child.once('exit', resolve))
      this.#child.kill('SIGKILL')
      await exited
    }
    rmSync(this.#dir, { recursive: true, force: true })
  }

  async #ask (...args: string[]): Promise<unknown> {
    const client = new Redis({
      port: this.port, host: '127.0.0.1', password: this.#password, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null
    })
    client.on('error', () => {})
    try {
      await client.connect()
      return await client.call('SENTINEL', ...args)
    } finally {
      client.disconnect()
    }
  }
}
