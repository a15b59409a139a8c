import { Cluster, Redis } from 'ioredis'
import type { ClusterOptions, RedisOptions } from 'ioredis'
import { parseRedisUrl } from './redis-url.ts'

/**
 * The ioredis client a redis `STORE_URL` names: a `Redis` for `redis://` and
 * for `redis+sentinel://` (ioredis asks the Sentinels for the master and asks
 * again after every lost connection, so a failover is followed), a `Cluster`
 * for `redis+cluster://`. Nothing is connected yet (`lazyConnect`).
 *
 * `options` are the store's client options (no offline queue, no resend,
 * timeouts; see `RedisStore.open`): they apply to the one connection, to the
 * master behind the Sentinels, or to every node of a Cluster. The URL's
 * credentials, when it has them, come last: they are what the operator
 * configured; TLS options given in `options` (a CA…) are kept.
 * @throws {StoreUrlError} for a URL that is not one of the redis forms
 */
export function createRedisClient (url: string, options: RedisOptions): Redis | Cluster {
  const target = parseRedisUrl(url)
  switch (target.mode) {
    case 'standalone':
      return new Redis(target.url, options)
    case 'sentinel':
      return new Redis({
        ...options,
        sentinels: target.sentinels,
        name: target.masterName,
        db: target.db,
        ...defined({
          username: target.username,
          password: target.password,
          sentinelUsername: target.sentinelUsername,
          sentinelPassword: target.sentinelPassword
        }),
        // Sentinels are asked once per connection; a failover drops it.
        sentinelRetryStrategy: (times) => Math.min(times * 50, 2000),
        // TLS options of the caller's (a CA, a client certificate) are kept.
        ...(target.tls ? { tls: { ...options.tls }, sentinelTLS: { ...options.tls }, enableTLSForSentinelMode: true } : {})
      })
    case 'cluster': {
      // A Cluster reconnects its nodes itself: a node's own retryStrategy is not for it.
      const { lazyConnect, enableOfflineQueue, retryStrategy: _, ...perNode } = options
      const cluster: ClusterOptions = {
        lazyConnect,
        enableOfflineQueue,
        // Like a single client's reconnects: 50 ms more per attempt, at most 2 s.
        clusterRetryStrategy: (times) => Math.min(times * 50, 2000),
        redisOptions: {
          ...perNode,
          ...defined({ username: target.username, password: target.password }),
          ...(target.tls ? { tls: { ...perNode.tls } } : {})
        }
      }
      return new Cluster(target.nodes, cluster)
    }
  }
}

/** The entries whose value is defined: an absent login in the URL must not clear one given in options. */
function defined<T extends Record<string, string | undefined>> (o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>
}
