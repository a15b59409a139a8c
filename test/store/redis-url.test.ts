/**
 * The redis forms of `STORE_URL` (plain, Sentinel, Cluster): parsed for the
 * store, validated by the config, shown redacted; no message ever repeats a
 * password. The servers themselves: redis-sentinel.test.ts, redis-cluster.test.ts.
 */
import assert from 'node:assert/strict'
import { Cluster, Redis } from 'ioredis'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { describeConfig, loadConfig } from '../../src/config/index.ts'
import { ConfigError, StoreUrlError } from '../../src/errors.ts'
import { parseRedisUrl, parseStoreUrl, redactRedisUrl } from '../../src/store/index.ts'
import { createRedisClient } from '../../src/store/redis-client.ts'

const SECRET = 'hunter2-TOP-secret'

function refused (url: string, message: RegExp): void {
  assert.throws(() => parseStoreUrl(url), (err) => {
    assert.ok(err instanceof StoreUrlError, url)
    assert.equal(err.code, 'SM_ERR_STORE_URL')
    assert.match(err.message, message, url)
    assert.ok(!err.message.includes('hunter2'), err.message)
    return true
  })
}

describe('redis+sentinel:// and redis+cluster:// URLs', () => {
  it('a Sentinel URL names its Sentinels, the master, the database and the logins', () => {
    assert.deepEqual(parseRedisUrl('redis+sentinel://s1:26379,10.0.0.2,[::1]:26380/mymaster'), {
      mode: 'sentinel',
      sentinels: [{ host: 's1', port: 26379 }, { host: '10.0.0.2', port: 26379 }, { host: '::1', port: 26380 }],
      masterName: 'mymaster',
      db: 0,
      tls: false,
      username: undefined,
      password: undefined,
      sentinelUsername: undefined,
      sentinelPassword: undefined
    })
    assert.deepEqual(parseRedisUrl(`rediss+sentinel://app:${SECRET}%40x@sentinel_a:1,sentinel-b:2/cache%20main/7?sentinelUsername=sen&sentinelPassword=s%3Apw`), {
      mode: 'sentinel',
      sentinels: [{ host: 'sentinel_a', port: 1 }, { host: 'sentinel-b', port: 2 }],
      masterName: 'cache main',
      db: 7,
      tls: true,
      username: 'app',
      password: `${SECRET}@x`,
      sentinelUsername: 'sen',
      sentinelPassword: 's:pw'
    })
  })

  it('a Cluster URL names seed nodes (6379 by default) and a login, and nothing else', () => {
    assert.deepEqual(parseRedisUrl(`redis+cluster://:${SECRET}@n1:7000,n2,[2001:db8::7]:7002`), {
      mode: 'cluster',
      nodes: [{ host: 'n1', port: 7000 }, { host: 'n2', port: 6379 }, { host: '2001:db8::7', port: 7002 }],
      tls: false,
      username: undefined,
      password: SECRET
    })
    assert.equal((parseRedisUrl('REDISS+CLUSTER://n1:7000/') as { tls: boolean }).tls, true)
  })

  it('plain redis:// URLs are left to the client, as before', () => {
    assert.deepEqual(parseRedisUrl(`redis://:${SECRET}@cache:6379/2?family=6`), { mode: 'standalone', url: `redis://:${SECRET}@cache:6379/2?family=6` })
    assert.deepEqual(parseStoreUrl('redis+cluster://n1:7000'), { kind: 'redis', url: 'redis+cluster://n1:7000' })
  })

  it('refuses malformed ones, naming what is wrong and never the password', () => {
    refused(`redis+sentinel://:${SECRET}@/mymaster`, /needs at least one host:port/)
    refused(`redis+sentinel://:${SECRET}@s1:26379`, /names the master after the hosts/)
    refused(`redis+sentinel://:${SECRET}@s1:26379/m/x`, /database .* is a number/)
    refused(`redis+sentinel://:${SECRET}@s1:26379/m/0/extra`, /names the master after the hosts/)
    refused(`redis+sentinel://:${SECRET}@s1:99999/m`, /host 1 of the redis\+sentinel:\/\/ URL has a port outside 1–65535/)
    refused(`redis+sentinel://:${SECRET}@s1,bad host/m`, /host 2 of the redis\+sentinel:\/\/ URL is not a host name/)
    refused(`redis+sentinel://:${SECRET}@[nope]/m`, /host 1 .* is not a host name/)
    refused(`redis+sentinel://:${SECRET}@s1/m?password=${SECRET}`, /does not take the query parameter "password"; it takes sentinelUsername, sentinelPassword/)
    refused(`redis+sentinel://s1/m?${SECRET}=1`, /does not take the query parameter one;/)
    refused(`redis+sentinel://:${SECRET}@s1/m#frag`, /has no #fragment/)
    refused('redis+sentinel://:%E0%A4%A@s1/m', /the password of the redis\+sentinel:\/\/ URL is not valid percent-encoding/)
    refused(`redis+cluster://:${SECRET}@n1:7000/0`, /has no path: a Redis Cluster has only database 0/)
    refused(`redis+cluster://n1:7000?sentinelPassword=${SECRET}`, /does not take the query parameter "sentinelPassword"; it takes none/)
    refused(`redis-sentinel://:${SECRET}@s1/m`, /a redis URL is one of/)
    refused(`redis+shard://:${SECRET}@s1`, /a redis URL is one of/)
  })

  it('are shown with every password and the query redacted', () => {
    assert.equal(redactRedisUrl(`redis+sentinel://app:${SECRET}@s1:26379,s2:26379/mymaster/2?sentinelPassword=${SECRET}`),
      'redis+sentinel://app:[redacted]@s1:26379,s2:26379/mymaster/2?…')
    assert.equal(redactRedisUrl(`rediss+cluster://:${SECRET}@n1:7000,n2:7001`), 'rediss+cluster://:[redacted]@n1:7000,n2:7001')
    assert.equal(redactRedisUrl('redis+cluster://n1:7000'), 'redis+cluster://n1:7000')
    assert.equal(redactRedisUrl(`redis://default:${SECRET}@cache.example:6379/2`), 'redis://default:[redacted]@cache.example:6379/2')
    assert.equal(redactRedisUrl(`redis:${SECRET}`), '(invalid)')
  })

  it('the config takes them as STORE_URL, shows them redacted, and refuses bad ones with exit-2 messages that keep the password out', (t) => {
    const cwd = mkdtempSync(join(tmpdir(), 'sm-redis-url-'))
    t.after(() => rmSync(cwd, { recursive: true, force: true }))
    const load = (url: string): ReturnType<typeof loadConfig>['config'] => loadConfig({ env: { STORE_URL: url }, argv: [], cwd }).config
    const sentinel = `redis+sentinel://:${SECRET}@s1:26379,s2:26379/mymaster`
    assert.equal(load(sentinel).storeUrl, sentinel)
    assert.equal(describeConfig(load(sentinel)).storeUrl, 'redis+sentinel://:[redacted]@s1:26379,s2:26379/mymaster')
    assert.equal(load('redis+cluster://n1:7000,n2:7001').storeUrl, 'redis+cluster://n1:7000,n2:7001')
    for (const [url, message] of [
      [`redis+cluster://:${SECRET}@n1:7000/1`, /^STORE_URL: a redis\+cluster:\/\/ URL has no path/],
      [`redis+sentinel://:${SECRET}@s1:26379`, /^STORE_URL: a redis\+sentinel:\/\/ URL names the master/],
      [`redis://:${SECRET}@`, /^STORE_URL: a redis URL looks like redis:\/\//]
    ] as const) {
      assert.throws(() => load(url), (err) => {
        assert.ok(err instanceof ConfigError)
        assert.match(err.message, message)
        assert.ok(!err.message.includes('hunter2'), err.message)
        return true
      })
    }
  })

  it('the client takes the URL\'s logins and TLS, and keeps those given in code when the URL has none', () => {
    const ca = '-----BEGIN CERTIFICATE-----'
    const sentinel = createRedisClient('rediss+sentinel://s1:26379/m/2', { lazyConnect: true, password: 'from-code', tls: { ca } })
    assert.ok(sentinel instanceof Redis)
    assert.deepEqual([sentinel.options.password, sentinel.options.db, sentinel.options.name, sentinel.options.tls?.ca, sentinel.options.sentinelTLS?.ca],
      ['from-code', 2, 'm', ca, ca])
    const fromUrl = createRedisClient(`redis+sentinel://u:${SECRET}@s1/m?sentinelPassword=sp`, { lazyConnect: true, password: 'from-code' })
    assert.ok(fromUrl instanceof Redis)
    assert.deepEqual([fromUrl.options.username, fromUrl.options.password, fromUrl.options.sentinelPassword, fromUrl.options.tls], ['u', SECRET, 'sp', undefined])
    const cluster = createRedisClient(`rediss+cluster://:${SECRET}@n1:7000,n2:7001`, { lazyConnect: true, enableOfflineQueue: false, commandTimeout: 10_000, tls: { ca } })
    assert.ok(cluster instanceof Cluster)
    assert.deepEqual([cluster.options.enableOfflineQueue, cluster.options.redisOptions?.password, cluster.options.redisOptions?.commandTimeout, cluster.options.redisOptions?.tls?.ca],
      [false, SECRET, 10_000, ca])
    for (const c of [sentinel, fromUrl, cluster]) c.disconnect()
  })
})
