import { isIP } from 'node:net'
import { StoreUrlError } from '../errors.ts'

// The forms of a redis STORE_URL, parsed without loading ioredis (the config
// is validated at start, and a proxy on SQLite never loads the client).
// A URL may hold passwords: no message here repeats any part of it.

/** One `host:port` of a Sentinel or Cluster URL. */
export interface RedisNode {
  host: string
  port: number
}

/** Where a redis `STORE_URL` points, and how to log in. */
export type RedisTarget =
  | {
    /** `redis://` or `rediss://`: one server (ioredis parses the URL itself). */
    mode: 'standalone'
    url: string
  }
  | {
    /** `redis+sentinel://`: the master a set of Sentinels names; followed across failovers. */
    mode: 'sentinel'
    sentinels: RedisNode[]
    masterName: string
    db: number
    /** `rediss+sentinel://`: TLS to the Sentinels and to the master. */
    tls: boolean
    username?: string | undefined
    password?: string | undefined
    sentinelUsername?: string | undefined
    sentinelPassword?: string | undefined
  }
  | {
    /** `redis+cluster://`: seed nodes of a Redis Cluster. */
    mode: 'cluster'
    nodes: RedisNode[]
    /** `rediss+cluster://`: TLS to every node. */
    tls: boolean
    username?: string | undefined
    password?: string | undefined
  }

/** The redis forms, for messages. */
export const REDIS_URL_FORMS = '`redis://[user:password@]host[:port][/db]` (`rediss://` for TLS), ' +
  '`redis+sentinel://[user:password@]host:port[,host:port…]/<master name>[/<db>]` or ' +
  '`redis+cluster://[user:password@]host:port[,host:port…]` (`rediss+…` for TLS)'

const SENTINEL_PORT = 26379
const REDIS_PORT = 6379
/** Query parameters a Sentinel URL takes: the Sentinels' own login, when they have one. */
const SENTINEL_PARAMS = new Set(['sentinelUsername', 'sentinelPassword'])

/** True when `url`'s scheme is one of the redis forms (or a misspelt one: `redis-sentinel:`). */
export function isRedisUrl (url: string): boolean {
  return /^rediss?[+-]?[a-z]*:/i.test(url)
}

/**
 * Parse a redis `STORE_URL`.
 * @throws {StoreUrlError} naming what is wrong, never repeating the URL (it may hold a password)
 */
export function parseRedisUrl (url: string): RedisTarget {
  const m = /^(rediss?)(?:\+(sentinel|cluster))?:\/\/([^/?#]*)([^?#]*)(\?[^#]*)?(#.*)?$/i.exec(url)
  if (m === null) throw new StoreUrlError(`STORE_URL: a redis URL is one of ${REDIS_URL_FORMS}`)
  const [, scheme = '', variant, authority = '', path = '', query, fragment] = m
  const tls = scheme.toLowerCase() === 'rediss'
  if (variant === undefined) return standalone(url)
  const kind = variant.toLowerCase() as 'sentinel' | 'cluster'
  const form = `${scheme}+${kind}://`
  if (fragment !== undefined) throw new StoreUrlError(`STORE_URL: a ${form} URL has no #fragment`)
  const at = authority.lastIndexOf('@')
  const { username, password } = credentials(at < 0 ? undefined : authority.slice(0, at), form)
  const nodes = hostList(authority.slice(at + 1), kind === 'sentinel' ? SENTINEL_PORT : REDIS_PORT, form)
  const params = queryParams(query, kind === 'sentinel' ? SENTINEL_PARAMS : new Set(), form)
  if (kind === 'cluster') {
    if (path !== '' && path !== '/') {
      throw new StoreUrlError('STORE_URL: a redis+cluster:// URL has no path: a Redis Cluster has only database 0')
    }
    return { mode: 'cluster', nodes, tls, username, password }
  }
  const parts = path.split('/').slice(1)
  const masterName = decode(parts[0] ?? '', 'the master name', form)
  if (masterName === '' || parts.length > 2) {
    throw new StoreUrlError('STORE_URL: a redis+sentinel:// URL names the master after the hosts: redis+sentinel://host:26379/mymaster[/db]')
  }
  const db = parts[1] === undefined ? 0 : Number(parts[1])
  if (parts[1] === '' || !Number.isSafeInteger(db) || db < 0 || !/^\d+$/.test(parts[1] ?? '0')) {
    throw new StoreUrlError('STORE_URL: the database of a redis+sentinel:// URL is a number (…/mymaster/0)')
  }
  return {
    mode: 'sentinel',
    sentinels: nodes,
    masterName,
    db,
    tls,
    username,
    password,
    sentinelUsername: params.get('sentinelUsername'),
    sentinelPassword: params.get('sentinelPassword')
  }
}

/**
 * `url` with every password replaced by `[redacted]` and the query by `?…`
 * (a Sentinel URL may carry the Sentinels' password there), for logs.
 * `(invalid)` for a URL that does not parse.
 */
export function redactRedisUrl (url: string): string {
  const m = /^([a-z+]+:\/\/)([^/?#]*)([^?#]*)(\?[^#]*)?/i.exec(url)
  if (m === null) return '(invalid)'
  const [, scheme = '', authority = '', path = '', query] = m
  const at = authority.lastIndexOf('@')
  let user = ''
  if (at >= 0) {
    const info = authority.slice(0, at)
    const colon = info.indexOf(':')
    user = colon < 0 ? `${info}@` : `${info.slice(0, colon)}:[redacted]@`
  }
  return `${scheme}${user}${authority.slice(at + 1)}${path}${query === undefined ? '' : '?…'}`
}

/** A plain `redis://` / `rediss://` URL: ioredis parses it; here only its shape is checked. */
function standalone (url: string): RedisTarget {
  let host = ''
  try {
    host = new URL(url).hostname
  } catch {}
  if (host === '') throw new StoreUrlError('STORE_URL: a redis URL looks like redis://[user:password@]host[:port][/db] (rediss:// for TLS)')
  return { mode: 'standalone', url }
}

function credentials (info: string | undefined, form: string): { username?: string, password?: string } {
  if (info === undefined) return {}
  const colon = info.indexOf(':')
  const username = decode(colon < 0 ? info : info.slice(0, colon), 'the user name', form)
  const password = colon < 0 ? undefined : decode(info.slice(colon + 1), 'the password', form)
  return { username: username === '' ? undefined : username, password: password === '' ? undefined : password }
}

/** `host[:port],host[:port]…`; IPv6 addresses in brackets. */
function hostList (list: string, defaultPort: number, form: string): RedisNode[] {
  if (list === '') throw new StoreUrlError(`STORE_URL: a ${form} URL needs at least one host:port`)
  return list.split(',').map((item, i) => {
    const where = `host ${i + 1} of the ${form} URL`
    const m = /^(?:\[([0-9a-f:.]+)\]|([A-Za-z0-9._-]+))(?::(\d{1,5}))?$/i.exec(item)
    const host = m?.[1] ?? m?.[2]
    if (m === null || host === undefined || (m[1] !== undefined && isIP(m[1]) !== 6)) {
      throw new StoreUrlError(`STORE_URL: ${where} is not a host name, IPv4 address or [IPv6] address`)
    }
    const port = m[3] === undefined ? defaultPort : Number(m[3])
    if (port < 1 || port > 65535) throw new StoreUrlError(`STORE_URL: ${where} has a port outside 1–65535`)
    return { host, port }
  })
}

function queryParams (query: string | undefined, allowed: ReadonlySet<string>, form: string): Map<string, string> {
  const params = new Map<string, string>()
  if (query === undefined || query === '?') return params
  for (const pair of query.slice(1).split('&')) {
    const eq = pair.indexOf('=')
    const name = eq < 0 ? pair : pair.slice(0, eq)
    if (!allowed.has(name)) {
      // A name is echoed only when it is one word: `?hunter2` must not reach a log.
      const shown = /^[A-Za-z]{1,32}$/.test(name) ? `"${name}"` : 'one'
      const known = allowed.size === 0 ? 'it takes none' : `it takes ${[...allowed].join(', ')}`
      throw new StoreUrlError(`STORE_URL: a ${form} URL does not take the query parameter ${shown}; ${known}`)
    }
    params.set(name, decode(eq < 0 ? '' : pair.slice(eq + 1), `the ${name} parameter`, form))
  }
  return params
}

function decode (s: string, what: string, form: string): string {
  try {
    return decodeURIComponent(s)
  } catch {
    throw new StoreUrlError(`STORE_URL: ${what} of the ${form} URL is not valid percent-encoding`)
  }
}
