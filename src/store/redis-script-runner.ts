import type { Cluster, Redis } from 'ioredis'
import { StoreClosedError, StoreError, StreammeterError } from '../errors.ts'
import { SCRIPTS } from './redis-scripts.ts'
import type { ScriptName } from './redis-scripts.ts'

type ScriptCall = (numKeys: number, ...args: Array<string | number>) => Promise<unknown>

/**
 * How the redis store's parts (the store, its flusher and its outbox) talk
 * to Redis: the scripts defined on the store's client, the closed check, and
 * failures of Redis or the connection turned into StoreError with the cause.
 */
export class RedisScriptRunner {
  readonly #client: Redis | Cluster
  #closed = false

  /** Define every script on `client` (SCRIPTS, src/store/redis-scripts.ts). */
  constructor (client: Redis | Cluster) {
    this.#client = client
    for (const [name, lua] of Object.entries(SCRIPTS)) client.defineCommand(name, { lua })
  }

  /** True once {@link RedisScriptRunner.close} was called. */
  get closed (): boolean {
    return this.#closed
  }

  /** From now on every operation fails with StoreClosedError. */
  close (): void {
    this.#closed = true
  }

  /** Run one script (EVALSHA; ioredis falls back to EVAL once when Redis does not know it yet). */
  script (operation: string, name: ScriptName, keys: string[], args: Array<string | number>): Promise<unknown> {
    return this.run(operation, () => {
      const call = (this.#client as unknown as Record<ScriptName, ScriptCall>)[name]
      return call.call(this.#client, keys.length, ...keys, ...args)
    })
  }

  /** Closed check; failures of Redis or the connection become StoreError with the cause. */
  async run<T> (operation: string, fn: () => Promise<T>): Promise<T> {
    this.check()
    try {
      return await fn()
    } catch (err) {
      if (err instanceof StreammeterError) throw err
      throw new StoreError(`redis store ${operation} failed: ${messageOf(err)}`, { cause: withoutArguments(err) })
    }
  }

  /** @throws {StoreClosedError} once closed */
  check (): void {
    if (this.#closed) throw new StoreClosedError()
  }
}

/**
 * ioredis puts the failed command on its errors (`err.command.args`): for a
 * flush, the script and a batch of uids and client IPs, megabytes that a
 * logger would print whole. The cause keeps the command's name only.
 */
export function withoutArguments (err: unknown): unknown {
  if (err instanceof Error && 'command' in err && typeof err.command === 'object' && err.command !== null && 'name' in err.command) {
    err.command = { name: err.command.name }
  }
  return err
}

/** The message of an error, or the thrown value as a string. */
export function messageOf (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
