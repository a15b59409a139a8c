import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from '../helpers/own-redis.ts'
import { answersPing } from '../helpers/redis.ts'

/**
 * A redis-server of the fault suite's own, configured as docs/scaling.md
 * tells operators to (AOF, fsync on every write), that can be killed with
 * SIGKILL and started again from its own files.
 */
export class FaultRedis {
  readonly url: string
  readonly #port: number
  readonly #dir = mkdtempSync(join(tmpdir(), 'sm-fault-redis-'))
  #child: ChildProcess | undefined

  private constructor (port: number) {
    this.#port = port
    this.url = `redis://127.0.0.1:${port}`
  }

  static async start (): Promise<FaultRedis> {
    const redis = new FaultRedis(await freePort())
    await redis.restart()
    return redis
  }

  /** Start (again) from the files in its directory; resolves once it answers PING. */
  async restart (): Promise<void> {
    if (this.#child !== undefined) return
    const child = spawn('redis-server', [
      '--port', String(this.#port), '--bind', '127.0.0.1', '--dir', this.#dir,
      '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--maxmemory-policy', 'noeviction'
    ], { stdio: 'ignore' })
    this.#child = child
    const deadline = Date.now() + 10_000
    while (!await answersPing(this.url, 500)) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error('redis-server did not start')
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }

  /** SIGKILL: no chance to write anything more. */
  async kill (): Promise<void> {
    const child = this.#child
    if (child === undefined) return
    this.#child = undefined
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGKILL')
    await exited
  }

  async destroy (): Promise<void> {
    await this.kill()
    rmSync(this.#dir, { recursive: true, force: true })
  }
}
