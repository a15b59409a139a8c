/**
 * Redis for tests: the real server at 127.0.0.1:6379, one key
 * prefix per store under a per-file, per-run base, and cleanup of exactly
 * those keys (never FLUSHALL / FLUSHDB: the server may be shared).
 *
 * Without Redis the suites are skipped, except in CI (`CI=true`), where a
 * missing Redis is a failure: a green CI run must have run them.
 */
import { Redis } from 'ioredis'
import type { TestContext } from 'node:test'

export const REDIS_URL = 'redis://127.0.0.1:6379'
export const SKIP_REASON = 'Redis is not reachable at 127.0.0.1:6379; set CI=true to make this a failure'
const CI_FAILURE = 'Redis is not reachable at 127.0.0.1:6379 and CI=true: the redis tests must run in CI (start redis-server)'

let reachable: Promise<boolean> | undefined

/** PING the test server once per process (1 s connect timeout, no retries). */
export function redisReachable (): Promise<boolean> {
  reachable ??= answersPing(REDIS_URL, 1000)
  return reachable
}

/** True when a Redis at `url` answers PING (one attempt, no retries). */
export async function answersPing (url: string, connectTimeoutMs: number): Promise<boolean> {
  const client = new Redis(url, { lazyConnect: true, connectTimeout: connectTimeoutMs, maxRetriesPerRequest: 0, retryStrategy: () => null })
  client.on('error', () => {})
  try {
    await client.connect()
    return (await client.ping()) === 'PONG'
  } catch {
    return false
  } finally {
    client.disconnect()
  }
}

/**
 * Options for a `describe` that needs Redis: `{ skip }` without Redis, `{}`
 * with it, and `{}` in CI without it, so that its tests run and fail in
 * {@link redisOrSkip}. Await it at the top level of the test file.
 */
export async function redisSuite (): Promise<{ skip?: string }> {
  if (await redisReachable() || process.env.CI === 'true') return {}
  return { skip: SKIP_REASON }
}

/**
 * For one test: true when Redis is there; otherwise skips the test and
 * returns false (the test should return), or throws when `CI=true`.
 */
export async function redisOrSkip (t: TestContext): Promise<boolean> {
  if (await redisReachable()) return true
  if (process.env.CI === 'true') throw new Error(CI_FAILURE)
  t.skip(SKIP_REASON)
  return false
}

const RUN = `${process.pid}-${Date.now().toString(36)}`
let count = 0

/**
 * A key prefix no other test file, test or run uses: `smtest:<name>:<pid>-<time>:<n>`.
 * Stores put their keys under `{<prefix>}:`.
 */
export function uniquePrefix (name: string): string {
  return `smtest:${name}:${RUN}:${++count}`
}

/** Every key of the store with this prefix (SCAN MATCH on its hash tag). */
export async function keysOf (prefix: string, client?: Redis): Promise<string[]> {
  const own = client ?? new Redis(REDIS_URL)
  try {
    const keys: string[] = []
    let cursor = '0'
    do {
      const [next, batch] = await own.scan(cursor, 'MATCH', `{${escapeGlob(prefix)}}:*`, 'COUNT', 1000)
      cursor = next
      keys.push(...batch)
    } while (cursor !== '0')
    return keys
  } finally {
    if (client === undefined) await own.quit()
  }
}

/** Delete exactly the keys of the store with this prefix. Returns how many went. */
export async function deletePrefix (prefix: string): Promise<number> {
  const client = new Redis(REDIS_URL)
  try {
    const keys = await keysOf(prefix, client)
    for (let i = 0; i < keys.length; i += 500) await client.unlink(...keys.slice(i, i + 500))
    return keys.length
  } finally {
    await client.quit()
  }
}

/** Delete the prefix's keys when the test ends. */
export function cleanupPrefix (t: TestContext, prefix: string): void {
  t.after(() => deletePrefix(prefix))
}

/** A prefix as a literal in a SCAN pattern. */
function escapeGlob (s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&')
}
