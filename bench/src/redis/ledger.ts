/**
 * The Redis side of the `redis` benchmark: stores on a key prefix of their
 * own, exact cleanup of that prefix (the server may be shared: never
 * FLUSHALL), and what Redis itself says about a measurement (command
 * statistics, SLOWLOG, memory).
 */
import { randomBytes } from 'node:crypto'
import { Socket } from 'node:net'
import { Redis } from 'ioredis'
import type { UsagePolicy } from '../../../src/meter/index.ts'
import { RedisStore } from '../../../src/store/redis-store.ts'

/** The server every measurement uses. */
export const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379'

/** A prefix no other run (or concurrent test) uses: `smbench:<what>:<random>`. */
export function benchPrefix (what: string): string {
  return `smbench:${what}:${randomBytes(6).toString('hex')}`
}

/** A store on `prefix`, with the store's own client options (the server's). */
export async function openBenchStore (prefix: string, policy: UsagePolicy, flushChunkUids?: number): Promise<RedisStore> {
  return await RedisStore.open(REDIS_URL, policy, { prefix, flushChunkUids })
}

/** What one round of a benchmark gets: a store on a fresh prefix, and the admin client. */
export interface BenchRound {
  admin: Redis
  store: RedisStore
  prefix: string
  /** 0-based. */
  round: number
}

/**
 * Run `rounds` rounds of `body`, each on a store of its own under a fresh
 * `what` prefix (closed and its keys deleted after the round, whatever
 * happened), with one admin client for all of them. Resolves each round's value.
 */
export async function onFreshStores<T> (
  what: string,
  rounds: number,
  open: { policy: UsagePolicy, flushChunkUids?: number },
  body: (round: BenchRound) => Promise<T>
): Promise<T[]> {
  const admin = adminClient()
  const out: T[] = []
  try {
    for (let round = 0; round < rounds; round++) {
      const prefix = benchPrefix(what)
      const store = await openBenchStore(prefix, open.policy, open.flushChunkUids)
      try {
        out.push(await body({ admin, store, prefix, round }))
      } finally {
        await store.close()
        await deletePrefix(admin, prefix)
      }
    }
  } finally {
    await admin.quit()
  }
  return out
}

/** A plain client for INFO, SLOWLOG, MEMORY USAGE and cleanup. */
export function adminClient (): Redis {
  const client = new Redis(REDIS_URL, { lazyConnect: false })
  client.on('error', () => {})
  return client
}

/** Every key of the store under `prefix` (SCAN MATCH on its hash tag). */
export async function keysOf (client: Redis, prefix: string): Promise<string[]> {
  const keys: string[] = []
  let cursor = '0'
  do {
    const [next, batch] = await client.scan(cursor, 'MATCH', `{${prefix.replace(/[*?[\]\\]/g, '\\$&')}}:*`, 'COUNT', 1000)
    cursor = next
    keys.push(...batch)
  } while (cursor !== '0')
  return keys
}

/** Delete exactly the keys under `prefix` (UNLINK: freed off the main thread). Returns how many. */
export async function deletePrefix (client: Redis, prefix: string): Promise<number> {
  const keys = await keysOf(client, prefix)
  for (let i = 0; i < keys.length; i += 500) await client.unlink(...keys.slice(i, i + 500))
  return keys.length
}

/** Bytes Redis accounts to the keys under `prefix` (MEMORY USAGE … SAMPLES 0: every element counted). */
export async function prefixMemory (client: Redis, prefix: string, match?: (key: string) => boolean): Promise<{ keys: number, bytes: number }> {
  let bytes = 0
  let keys = 0
  for (const key of await keysOf(client, prefix)) {
    if (match !== undefined && !match(key)) continue
    keys++
    bytes += Number(await client.memory('USAGE', key, 'SAMPLES', 0) ?? 0)
  }
  return { keys, bytes }
}

/** `used_memory` from INFO memory: the whole server's allocation. */
export async function usedMemory (client: Redis): Promise<number> {
  return Number(/used_memory:(\d+)/.exec(await client.info('memory'))?.[1] ?? Number.NaN)
}

/** Script calls and their time in Redis, over the whole server (INFO commandstats: eval + evalsha). */
export interface ScriptStats {
  calls: number
  usec: number
}

export async function scriptStats (client: Redis): Promise<ScriptStats> {
  const text = await client.info('commandstats')
  let calls = 0
  let usec = 0
  for (const m of text.matchAll(/cmdstat_(?:eval|evalsha):calls=(\d+),usec=(\d+)/g)) {
    calls += Number(m[1])
    usec += Number(m[2])
  }
  return { calls, usec }
}

/** The SLOWLOG threshold in µs (entries exist only for commands at least this slow). */
export async function slowlogThresholdUs (client: Redis): Promise<number> {
  const [, value] = await client.config('GET', 'slowlog-log-slower-than') as [string, string]
  return Number(value)
}

/** The id of the newest SLOWLOG entry (or -1): entries after it are new. */
export async function slowlogMark (client: Redis): Promise<number> {
  const [entry] = await client.slowlog('GET', 1) as Array<[number, ...unknown[]]>
  return entry === undefined ? -1 : Number(entry[0])
}

/**
 * The longest command newer than `mark` whose arguments name a key under
 * `prefix`, in µs; undefined when none reached the SLOWLOG threshold. Other
 * clients' commands are left out by the prefix.
 */
export async function slowestSince (client: Redis, mark: number, prefix: string): Promise<number | undefined> {
  const entries = await client.slowlog('GET', -1) as Array<[number, number, number, Array<string | Buffer>]>
  const tag = `{${prefix}}:`
  let slowest: number | undefined
  for (const [id, , us, args] of entries) {
    if (Number(id) <= mark) continue
    if (!args.some((a) => String(a).startsWith(tag))) continue
    slowest = Math.max(slowest ?? 0, Number(us))
  }
  return slowest
}

/**
 * Count socket writes while `fn` runs: ioredis writes a pipeline in one
 * write and then waits for every reply, so each write to Redis is one
 * round-trip. Nothing else in this process may talk to Redis meanwhile.
 */
export async function countWrites<T> (fn: () => Promise<T>): Promise<{ value: T, writes: number }> {
  const original = Socket.prototype.write
  let writes = 0
  Socket.prototype.write = function (this: Socket, ...args: unknown[]): boolean {
    writes++
    return (original as (...a: unknown[]) => boolean).apply(this, args)
  } as typeof original
  try {
    const value = await fn()
    return { value, writes }
  } finally {
    Socket.prototype.write = original
  }
}
