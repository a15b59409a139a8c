/**
 * Stores behind the {@link UsageStore} port. Importable as `streammeter/store`.
 */
import { StoreUrlError } from '../errors.ts'
import type { StoreDurability, UsagePolicy, UsageStore } from '../meter/index.ts'
import { MemoryStore } from './memory-store.ts'
import { REDIS_URL_FORMS, isRedisUrl, parseRedisUrl } from './redis-url.ts'
import { SqliteStore } from './sqlite-store.ts'

export { MemoryStore, SqliteStore }
// The Redis store is loaded when a redis:// URL is opened: ioredis adds
// resident memory that a proxy on the default SQLite store does not need
// (docs/performance.md#why-the-code-is-shaped-this-way).
// Import the class itself from `streammeter/store/redis`.
export type { RedisOpenOptions, RedisStore, RedisStoreOptions } from './redis-store.ts'
export { parseRedisUrl, redactRedisUrl } from './redis-url.ts'
export type { RedisNode, RedisTarget } from './redis-url.ts'

/** Where a `STORE_URL` points, once parsed. */
export type StoreLocation =
  | { kind: 'memory' }
  | { kind: 'sqlite', path: string }
  | { kind: 'redis', url: string }

const FORMS = '`memory:`, `sqlite:PATH` (e.g. `sqlite:./data/streammeter.db` or `sqlite:/var/lib/streammeter.db`), ' +
  REDIS_URL_FORMS

/** Options of {@link openStore}. */
export interface OpenStoreOptions {
  /** Key prefix of a shared (redis) store; other stores ignore it. @default 'streammeter' */
  prefix?: string | undefined
  /**
   * A shared (redis) store that cannot be reached at open: fail (true) or
   * start disconnected and connect in the background (false). See
   * {@link RedisStore.open}.
   * @default true
   */
  waitForConnection?: boolean | undefined
  /**
   * Called with what a redis store's server promises about durability
   * whenever that changes (see {@link RedisStoreOptions.onDurability}).
   */
  onDurability?: ((status: StoreDurability) => void) | undefined
}

/**
 * Parse a `STORE_URL` without opening anything, so that configuration can be
 * validated at start.
 * @throws {StoreUrlError} for a form this build does not know. The message
 *   never repeats the URL past its scheme: a `redis://` URL may hold a password.
 */
export function parseStoreUrl (url: string): StoreLocation {
  if (url === 'memory:') return { kind: 'memory' }
  if (url.startsWith('sqlite:')) {
    const path = url.slice('sqlite:'.length)
    // `sqlite://…` means different things to different tools (SQLAlchemy's
    // `sqlite:///x.db` is relative); refuse it rather than guess.
    if (path.startsWith('//')) {
      throw new StoreUrlError('STORE_URL: write sqlite:PATH without "//", e.g. sqlite:./data/streammeter.db or sqlite:/abs/streammeter.db')
    }
    if (path.trim() === '') throw new StoreUrlError('STORE_URL: sqlite: needs a file path, e.g. sqlite:./data/streammeter.db')
    return { kind: 'sqlite', path }
  }
  if (isRedisUrl(url)) {
    parseRedisUrl(url)
    return { kind: 'redis', url }
  }
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]
  const what = scheme === undefined ? 'a value without a scheme' : `the scheme "${scheme}:"`
  throw new StoreUrlError(`STORE_URL: ${what} names no store; use ${FORMS}`)
}

/**
 * Open the store a `STORE_URL` names: `memory:`, `sqlite:PATH` (relative to
 * the working directory, or absolute; parent directories are created) or a
 * redis URL: `redis://…` / `rediss://…`, `redis+sentinel://…` or
 * `redis+cluster://…` (keys under `{prefix}:`; connects before it returns
 * unless `waitForConnection` is false).
 * @throws {StoreUrlError} for an unknown form.
 * @throws {StoreError} when the store cannot be opened. Never repeats a redis URL.
 */
export async function openStore (url: string, policy: UsagePolicy, options: OpenStoreOptions = {}): Promise<UsageStore> {
  const location = parseStoreUrl(url)
  switch (location.kind) {
    case 'memory':
      return new MemoryStore(policy)
    case 'sqlite':
      return new SqliteStore(location.path, policy)
    case 'redis': {
      const { RedisStore } = await import('./redis-store.ts')
      return await RedisStore.open(location.url, policy, {
        prefix: options.prefix ?? 'streammeter', waitForConnection: options.waitForConnection, onDurability: options.onDurability
      })
    }
  }
}
