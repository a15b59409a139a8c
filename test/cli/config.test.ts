import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import {
  DEMO_MEDIA_ROOT, SETTING_NAMES, describeConfig, flagOf, loadConfig, toMeterOptions
} from '../../src/config/index.ts'
import type { Config, Env, SettingName } from '../../src/config/index.ts'
import { ConfigError } from '../../src/errors.ts'
import { resolveMeterOptions } from '../../src/meter/index.ts'

const dirs: string[] = []
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }) })

/** A fresh working directory, with `.env` holding `dotenv` when given. */
function workdir (dotenv?: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'sm-config-'))
  dirs.push(dir)
  if (dotenv !== undefined) writeFileSync(join(dir, '.env'), dotenv)
  return dir
}

const empty = workdir()

function load (env: Env = {}, argv: string[] = [], cwd = empty): Config {
  return loadConfig({ env, argv, cwd }).config
}

/** The ConfigError `fn` throws. */
function configError (fn: () => unknown): ConfigError {
  try {
    fn()
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`)
    assert.equal(err.code, 'SM_ERR_CONFIG')
    return err
  }
  assert.fail('expected a ConfigError')
}

describe('defaults', () => {
  it('resolves every default with no settings at all', () => {
    const c = load()
    assert.equal(c.port, 8080)
    assert.equal(c.host, '::')
    assert.deepEqual(c.origin, { kind: 'demo', root: DEMO_MEDIA_ROOT })
    assert.equal(c.originTimeout, 10)
    assert.equal(c.originHostHeader, undefined)
    assert.equal(c.originMaxConnections, 256)
    assert.equal(c.storeUrl, `sqlite:${join(empty, 'data', 'streammeter.db')}`)
    assert.equal(c.storePrefix, 'streammeter')
    assert.equal(c.signingSecret, undefined)
    assert.deepEqual(c.trustedProxies, [])
    assert.deepEqual(c.corsOrigins, ['*'])
    assert.equal(c.adminToken, undefined)
    assert.equal(c.trafficCollectorEnabled, true)
    assert.equal(c.trafficReportUrl, undefined)
    assert.equal(c.trafficApiKey, undefined)
    assert.equal(c.trafficMinBytes, 1048576)
    assert.equal(c.trafficReportInterval, 300)
    assert.equal(c.trafficAccumulatorTimeout, 600)
    assert.equal(c.trafficFlushInterval, 1)
    assert.equal(c.trafficMaxIps, 20)
    assert.equal(c.trafficMaxSessions, 10)
    assert.equal(c.trafficReportMaxUids, 5000)
    assert.equal(c.trafficReportTimeout, 30)
    assert.equal(c.trafficFlushMaxUids, 100000)
    assert.equal(c.shutdownGrace, 30)
    assert.equal(c.sendTimeout, 60)
    assert.equal(c.maxTransfersPerIp, 64)
    assert.equal(c.playlistMaxBytes, 1024 * 1024)
    assert.equal(c.logLevel, 'info')
    assert.equal(c.workers, 1)
  })

  it('is deep-frozen', () => {
    const c = load({ TRUSTED_PROXIES: '10.0.0.0/8' })
    assert.ok(Object.isFrozen(c))
    assert.ok(Object.isFrozen(c.origin))
    assert.ok(Object.isFrozen(c.trustedProxies))
    assert.ok(Object.isFrozen(c.corsOrigins))
    assert.throws(() => { (c as { port: number }).port = 1 }, TypeError)
    assert.throws(() => { (c.trustedProxies as string[]).push('1.2.3.4') }, TypeError)
  })
})

/** A valid value for every setting, and what it resolves to. */
const SAMPLES: Record<string, { value: string, check: (c: Config) => void }> = {
  PORT: { value: '9001', check: (c) => assert.equal(c.port, 9001) },
  HOST: { value: '127.0.0.1', check: (c) => assert.equal(c.host, '127.0.0.1') },
  ORIGIN_ROOT: { value: '.', check: (c) => assert.deepEqual(c.origin, { kind: 'fs', root: empty }) },
  ORIGIN_URL: { value: 'https://media.example.com/base', check: (c) => assert.deepEqual(c.origin, { kind: 'http', url: 'https://media.example.com/base' }) },
  ORIGIN_TIMEOUT: { value: '2.5', check: (c) => assert.equal(c.originTimeout, 2.5) },
  ORIGIN_HOST_HEADER: { value: 'media.example.com:8080', check: (c) => assert.equal(c.originHostHeader, 'media.example.com:8080') },
  ORIGIN_MAX_CONNECTIONS: { value: '8', check: (c) => assert.equal(c.originMaxConnections, 8) },
  STORE_URL: { value: 'memory:', check: (c) => assert.equal(c.storeUrl, 'memory:') },
  STORE_PREFIX: { value: 'sm:test', check: (c) => assert.equal(c.storePrefix, 'sm:test') },
  SIGNING_SECRET: { value: 'sign-me', check: (c) => assert.equal(c.signingSecret, 'sign-me') },
  TRUSTED_PROXIES: { value: '10.0.0.0/8, 192.0.2.7,fd00::/8 ,::1', check: (c) => assert.deepEqual(c.trustedProxies, ['10.0.0.0/8', '192.0.2.7', 'fd00::/8', '::1']) },
  ACCESS_ALLOW_CIDRS: { value: '203.0.113.0/24, 192.0.2.7,2001:db8::/32', check: (c) => assert.deepEqual(c.accessAllowCidrs, ['203.0.113.0/24', '192.0.2.7', '2001:db8::/32']) },
  CORS_ORIGINS: { value: 'https://player.example.com, http://LOCALHOST:3000/', check: (c) => assert.deepEqual(c.corsOrigins, ['https://player.example.com', 'http://localhost:3000']) },
  ACCESS_API_KEY: { value: 'api-key-1', check: (c) => assert.equal(c.accessApiKey, 'api-key-1') },
  ACCESS_OPEN_EXTENSIONS: { value: '.ts, M4S', check: (c) => assert.deepEqual(c.accessOpenExtensions, ['ts', 'm4s']) },
  ADMIN_TOKEN: { value: 'admin-tok', check: (c) => assert.equal(c.adminToken, 'admin-tok') },
  TRAFFIC_COLLECTOR_ENABLED: { value: 'no', check: (c) => assert.equal(c.trafficCollectorEnabled, false) },
  TRAFFIC_REPORT_URL: { value: 'http://127.0.0.1:9090/usage', check: (c) => assert.equal(c.trafficReportUrl, 'http://127.0.0.1:9090/usage') },
  TRAFFIC_API_KEY: { value: 'api-key', check: (c) => assert.equal(c.trafficApiKey, 'api-key') },
  TRAFFIC_MIN_BYTES: { value: '0', check: (c) => assert.equal(c.trafficMinBytes, 0) },
  TRAFFIC_REPORT_INTERVAL: { value: '1.5', check: (c) => assert.equal(c.trafficReportInterval, 1.5) },
  TRAFFIC_ACCUMULATOR_TIMEOUT: { value: '.5', check: (c) => assert.equal(c.trafficAccumulatorTimeout, 0.5) },
  TRAFFIC_FLUSH_INTERVAL: { value: '0.25', check: (c) => assert.equal(c.trafficFlushInterval, 0.25) },
  TRAFFIC_MAX_IPS: { value: '3', check: (c) => assert.equal(c.trafficMaxIps, 3) },
  TRAFFIC_MAX_SESSIONS: { value: '4', check: (c) => assert.equal(c.trafficMaxSessions, 4) },
  TRAFFIC_REPORT_MAX_UIDS: { value: '2', check: (c) => assert.equal(c.trafficReportMaxUids, 2) },
  TRAFFIC_REPORT_MAX_BYTES: { value: '2048', check: (c) => assert.equal(c.trafficReportMaxBytes, 2048) },
  TRAFFIC_REPORT_MAX_REJECTIONS: { value: '3', check: (c) => assert.equal(c.trafficReportMaxRejections, 3) },
  TRAFFIC_REPORT_TIMEOUT: { value: '7', check: (c) => assert.equal(c.trafficReportTimeout, 7) },
  TRAFFIC_FLUSH_MAX_UIDS: { value: '50', check: (c) => assert.equal(c.trafficFlushMaxUids, 50) },
  TRAFFIC_MEMORY_MAX_UIDS: { value: '500', check: (c) => assert.equal(c.trafficMemoryMaxUids, 500) },
  SHUTDOWN_GRACE: { value: '3', check: (c) => assert.equal(c.shutdownGrace, 3) },
  SESSION_TTL: { value: '600', check: (c) => assert.equal(c.sessionTtl, 600) },
  GRANT_TTL: { value: '90.5', check: (c) => assert.equal(c.grantTtl, 90.5) },
  GRANT_MAX_PER_UID: { value: '2', check: (c) => assert.equal(c.grantMaxPerUid, 2) },
  GRANT_MAX_PATHS_PER_NETWORK: { value: '7', check: (c) => assert.equal(c.grantMaxPathsPerNetwork, 7) },
  KEY_MAX_USES: { value: '1', check: (c) => assert.equal(c.keyMaxUses, 1) },
  PLAYLIST_MAX_USES: { value: '30', check: (c) => assert.equal(c.playlistMaxUses, 30) },
  SEND_TIMEOUT: { value: '2.5', check: (c) => assert.equal(c.sendTimeout, 2.5) },
  MAX_TRANSFERS_PER_IP: { value: '8', check: (c) => assert.equal(c.maxTransfersPerIp, 8) },
  PLAYLIST_MAX_BYTES: { value: '65536', check: (c) => assert.equal(c.playlistMaxBytes, 65536) },
  PUBLIC_HOSTS: { value: 'Media.Example.com, media.example.com:8443,[2001:db8::1]:8080', check: (c) => assert.deepEqual(c.publicHosts, ['media.example.com', 'media.example.com:8443', '[2001:db8::1]:8080']) },
  LOG_LEVEL: { value: 'DEBUG', check: (c) => assert.equal(c.logLevel, 'debug') },
  WORKERS: { value: '0', check: (c) => assert.equal(c.workers, 0) },
  ENGINE: { value: 'NGINX', check: (c) => assert.equal(c.engine, 'nginx') },
  ENGINE_DIR: { value: 'nginx-files', check: (c) => assert.equal(c.engineDir, join(empty, 'nginx-files')) },
  NGINX_BIN: { value: '/usr/sbin/nginx', check: (c) => assert.equal(c.nginxBin, '/usr/sbin/nginx') }
}

describe('every setting is an environment variable and a serve flag', () => {
  it('has a sample for every setting', () => {
    assert.deepEqual(Object.keys(SAMPLES).sort(), [...SETTING_NAMES].sort())
  })
  for (const name of SETTING_NAMES) {
    it(`${name} ↔ ${flagOf(name)}`, () => {
      const sample = SAMPLES[name]
      assert.ok(sample)
      sample.check(load({ [name]: sample.value }))
      sample.check(load({}, [flagOf(name), sample.value]))
      sample.check(load({}, [`${flagOf(name)}=${sample.value}`]))
    })
  }
})

describe('precedence: flags > environment > .env > defaults', () => {
  const cwd = workdir([
    '# a comment',
    'PORT=1001',
    'TRAFFIC_MIN_BYTES=5',
    'TRAFFIC_REPORT_INTERVAL="2"',
    "LOG_LEVEL='warn'",
    'NODE_ENV=production'
  ].join('\n'))

  it('takes each setting from the highest source that sets it', () => {
    const c = load({ PORT: '1002', TRAFFIC_MIN_BYTES: '6' }, ['--port', '1003'], cwd)
    assert.equal(c.port, 1003) // flag
    assert.equal(c.trafficMinBytes, 6) // environment over .env
    assert.equal(c.trafficReportInterval, 2) // .env (quoted)
    assert.equal(c.logLevel, 'warn') // .env (single-quoted)
    assert.equal(c.trafficMaxIps, 20) // default
  })

  it('treats empty values as unset at every level', () => {
    const c = load({ PORT: '', TRAFFIC_MIN_BYTES: '' }, ['--traffic-min-bytes='], cwd)
    assert.equal(c.port, 1001)
    assert.equal(c.trafficMinBytes, 5)
    assert.equal(load({ SIGNING_SECRET: '' }).signingSecret, undefined)
  })

  it('reads no .env when there is none, and trims non-secret values', () => {
    assert.equal(load({ PORT: ' 1234 ' }).port, 1234)
  })

  it('takes the last of repeated flags and a bare boolean flag as true', () => {
    assert.equal(load({}, ['--port', '1', '--port', '2']).port, 2)
    const c = load({ TRAFFIC_COLLECTOR_ENABLED: 'false' }, ['--traffic-collector-enabled', '--port', '3'])
    assert.equal(c.trafficCollectorEnabled, true)
    assert.equal(c.port, 3)
  })

  it('accepts true/false/1/0/yes/no for booleans, in any case', () => {
    for (const [value, expected] of [['true', true], ['FALSE', false], ['1', true], ['0', false], ['Yes', true], ['no', false]] as const) {
      assert.equal(load({ TRAFFIC_COLLECTOR_ENABLED: value }).trafficCollectorEnabled, expected, value)
    }
  })

  it('resolves relative paths against the working directory', () => {
    const cwd = workdir()
    mkdirSync(join(cwd, 'media'))
    const c = load({ ORIGIN_ROOT: 'media', STORE_URL: 'sqlite:db/usage.db' }, [], cwd)
    assert.deepEqual(c.origin, { kind: 'fs', root: join(cwd, 'media') })
    assert.equal(c.storeUrl, `sqlite:${join(cwd, 'db', 'usage.db')}`)
    assert.equal(load({ STORE_URL: 'sqlite:/var/lib/sm.db' }).storeUrl, 'sqlite:/var/lib/sm.db')
  })

  it('lets redis:// and rediss:// URLs through (the store refuses them at open for now)', () => {
    assert.equal(load({ STORE_URL: 'redis://127.0.0.1:6379/0' }).storeUrl, 'redis://127.0.0.1:6379/0')
    assert.equal(load({ STORE_URL: 'rediss://user:pw@cache.example:6380' }).storeUrl, 'rediss://user:pw@cache.example:6380')
  })
})

describe('invalid settings stop the start, naming the setting', () => {
  const cases: Array<[SettingName, string, RegExp]> = [
    ['PORT', 'http', /TCP port/],
    ['PORT', '65536', /TCP port/],
    ['HOST', 'not a host', /IP address or a host name/],
    ['ORIGIN_URL', 'ftp://files.example', /http:\/\/ or https:\/\//],
    ['ORIGIN_URL', 'https://media.example/?a=1', /without a query/],
    ['ORIGIN_TIMEOUT', '0', /positive number of seconds/],
    ['ORIGIN_HOST_HEADER', 'media.example.com/path', /host name or address/],
    ['ORIGIN_HOST_HEADER', 'a b', /host name or address/],
    ['ORIGIN_HOST_HEADER', 'media.example.com:70000', /host name or address/],
    ['ORIGIN_HOST_HEADER', '[not-v6]', /host name or address/],
    ['ORIGIN_MAX_CONNECTIONS', '0', /positive integer/],
    ['ORIGIN_MAX_CONNECTIONS', '16385', /at most 16384/],
    ['STORE_URL', 'postgres://db', /names no store/],
    ['STORE_URL', 'sqlite://x.db', /without "\/\/"/],
    ['STORE_PREFIX', 'a b', /letters, digits/],
    ['TRUSTED_PROXIES', '10.0.0.0/8,10.0.0.0/33', /"10.0.0.0\/33" is not an IP address or CIDR/],
    ['TRUSTED_PROXIES', '1.2.3', /is not an IP address or CIDR/],
    ['TRUSTED_PROXIES', 'fd00::/129', /is not an IP address or CIDR/],
    ['ACCESS_ALLOW_CIDRS', '203.0.113.0/24,example.com', /"example.com" is not an IP address or CIDR/],
    ['ACCESS_OPEN_EXTENSIONS', '.ts,*.m4s', /"\*\.m4s" is not a file extension/],
    ['CORS_ORIGINS', 'https://player.example/path', /is not an origin/],
    ['CORS_ORIGINS', '*,https://a.example', /use it alone/],
    ['TRAFFIC_COLLECTOR_ENABLED', 'maybe', /true or false/],
    ['TRAFFIC_REPORT_URL', 'billing.example/usage', /absolute http/],
    ['TRAFFIC_MIN_BYTES', '-1', /non-negative integer/],
    ['TRAFFIC_MIN_BYTES', '1.5', /non-negative integer/],
    ['TRAFFIC_MIN_BYTES', '1MB', /non-negative integer/],
    ['TRAFFIC_REPORT_INTERVAL', '0', /positive number of seconds/],
    ['TRAFFIC_REPORT_INTERVAL', '-5', /positive number of seconds/],
    ['TRAFFIC_REPORT_INTERVAL', '5m', /positive number of seconds/],
    ['TRAFFIC_ACCUMULATOR_TIMEOUT', 'never', /positive number of seconds/],
    ['TRAFFIC_FLUSH_INTERVAL', '0.0', /positive number of seconds/],
    ['TRAFFIC_MAX_IPS', '0', /positive integer/],
    ['SEND_TIMEOUT', '3601', /must be at most 3600 seconds/],
    ['SEND_TIMEOUT', '0', /positive number of seconds/],
    ['MAX_TRANSFERS_PER_IP', '0', /from 1 to 1000000/],
    ['SESSION_TTL', '0', /positive number of seconds/],
    ['GRANT_MAX_PER_UID', '0', /from 1 to 1000/],
    ['KEY_MAX_USES', '0', /from 1 to 1000000/],
    ['PLAYLIST_MAX_USES', 'many', /from 1 to 1000000/],
    ['GRANT_MAX_PATHS_PER_NETWORK', '1001', /from 1 to 1000/],
    ['MAX_TRANSFERS_PER_IP', '1000001', /from 1 to 1000000/],
    ['PLAYLIST_MAX_BYTES', '67108865', /from 1 to 67108864/],
    ['PLAYLIST_MAX_BYTES', '1MiB', /from 1 to 67108864/],
    ['PUBLIC_HOSTS', 'https://media.example.com', /is not a host\[:port\]/],
    ['PUBLIC_HOSTS', 'media.example.com:99999', /is not a host\[:port\]/],
    ['PUBLIC_HOSTS', 'media.example.com/path', /is not a host\[:port\]/],
    ['TRAFFIC_MAX_SESSIONS', 'ten', /positive integer/],
    ['TRAFFIC_REPORT_MAX_UIDS', '0', /positive integer/],
    ['TRAFFIC_REPORT_MAX_BYTES', '1023', /integer from 1024 to 67108864 \(bytes\)/],
    ['TRAFFIC_REPORT_MAX_BYTES', '67108865', /integer from 1024 to 67108864 \(bytes\)/],
    ['TRAFFIC_REPORT_MAX_REJECTIONS', '0', /integer from 1 to 1000/],
    ['TRAFFIC_REPORT_MAX_REJECTIONS', '1001', /integer from 1 to 1000/],
    ['TRAFFIC_REPORT_TIMEOUT', 'Infinity', /positive number of seconds/],
    ['TRAFFIC_FLUSH_MAX_UIDS', '1e5', /positive integer/],
    ['SHUTDOWN_GRACE', '1,5', /positive number of seconds/],
    ['LOG_LEVEL', 'loud', /one of fatal, error, warn, info, debug, trace, silent/],
    ['WORKERS', '-1', /non-negative integer/],
    ['ENGINE', 'apache', /one of node, nginx/]
  ]
  for (const [name, value, reason] of cases) {
    it(`${name}=${JSON.stringify(value)}`, () => {
      const fromEnv = configError(() => load({ [name]: value }))
      assert.equal(fromEnv.setting, name)
      assert.ok(fromEnv.message.startsWith(`${name}: `), fromEnv.message)
      assert.match(fromEnv.message, reason)
      assert.match(fromEnv.message, /\(from the environment\)/)
      const fromFlag = configError(() => load({}, [`${flagOf(name)}=${value}`]))
      assert.equal(fromFlag.setting, name)
      assert.ok(fromFlag.message.includes(`(from ${flagOf(name)})`), fromFlag.message)
      const fromDotEnv = configError(() => load({}, [], workdir(`${name}=${value}\n`)))
      assert.equal(fromDotEnv.setting, name)
      assert.match(fromDotEnv.message, /\(from \.env\)/)
    })
  }

  it('repeats a non-secret bad value to help find it', () => {
    assert.match(configError(() => load({ PORT: 'http' })).message, /got "http"/)
  })

  it('lists every invalid setting, the first one named', () => {
    const err = configError(() => load({ PORT: 'x', TRAFFIC_MIN_BYTES: 'y' }))
    assert.equal(err.setting, 'PORT')
    assert.match(err.message, /\n {2}TRAFFIC_MIN_BYTES: must be a non-negative integer/)
  })

  it('refuses ORIGIN_ROOT together with ORIGIN_URL', () => {
    const err = configError(() => load({ ORIGIN_ROOT: '.', ORIGIN_URL: 'http://media.example' }))
    assert.equal(err.setting, 'ORIGIN_URL')
    assert.match(err.message, /either ORIGIN_ROOT or ORIGIN_URL/)
  })

  it('refuses an ORIGIN_ROOT that is no directory', () => {
    const err = configError(() => load({ ORIGIN_ROOT: 'missing' }))
    assert.equal(err.setting, 'ORIGIN_ROOT')
    assert.ok(err.message.includes(join(empty, 'missing')), err.message)
  })
})

describe('unknown settings', () => {
  it('warns about an unknown variable with one of our prefixes, by name, and loads the rest', () => {
    const names = ['TRAFFIC_FOO', 'ORIGIN_PATH', 'STORE_PATH', 'SIGNING_KEY', 'SHUTDOWN_TIMEOUT', 'ADMIN_PASSWORD', 'CORS_ORIGIN', 'TRUSTED_PROXY']
    const { config, warnings } = loadConfig({ env: { ...Object.fromEntries(names.map((n) => [n, '1'])), PORT: '9000' }, argv: [], cwd: empty })
    assert.equal(config.port, 9000)
    assert.deepEqual(warnings.map((w) => w.variable), names)
    for (const w of warnings) assert.match(w.message, new RegExp(`^${w.variable} is not a setting and is ignored`))
  })

  it('suggests the setting a typo was meant to be', () => {
    const { warnings } = loadConfig({ env: { TRAFFIC_MIN_BYTE: '1', CORS_ORIGIN: '*', TRAFFIC_WHATEVER_ELSE: '1' }, argv: [], cwd: empty })
    assert.deepEqual(warnings.map((w) => [w.variable, w.suggestion]), [
      ['TRAFFIC_MIN_BYTE', 'TRAFFIC_MIN_BYTES'], ['CORS_ORIGIN', 'CORS_ORIGINS'], ['TRAFFIC_WHATEVER_ELSE', undefined]
    ])
    assert.equal(warnings[0]?.message, 'TRAFFIC_MIN_BYTE is not a setting and is ignored (did you mean TRAFFIC_MIN_BYTES?)')
    assert.equal(warnings[2]?.message, 'TRAFFIC_WHATEVER_ELSE is not a setting and is ignored')
  })

  it('rejects one in .env (streammeter\'s own file), with a suggestion', () => {
    const err = configError(() => load({}, [], workdir('TRAFFIC_MIN_BYTE=1\n')))
    assert.equal(err.setting, 'TRAFFIC_MIN_BYTE')
    assert.equal(err.message, 'TRAFFIC_MIN_BYTE: unknown setting (in .env) (did you mean TRAFFIC_MIN_BYTES?)')
  })

  it('ignores the machine\'s other variables, and empty unknown ones, without a warning', () => {
    const { config, warnings } = loadConfig({ env: { PATH: '/bin', HOME: '/root', NODE_ENV: 'test', TRAFFICKING: 'x', FOO_TRAFFIC_BAR: 'x', TRAFFIC_FOO: '' }, argv: [], cwd: empty })
    assert.equal(config.port, 8080)
    assert.deepEqual(warnings, [])
  })

  it('rejects an unknown flag, naming it', () => {
    const err = configError(() => load({}, ['--prot', '80']))
    assert.equal(err.setting, '--prot')
    assert.match(err.message, /unknown flag \(did you mean --port\?\)/)
    assert.equal(configError(() => load({}, ['-p', '80'])).setting, '-p')
    assert.equal(configError(() => load({}, ['--TRAFFIC_MIN_BYTES=1'])).setting, '--TRAFFIC_MIN_BYTES')
  })

  it('rejects a flag without a value, and positional arguments', () => {
    assert.match(configError(() => load({}, ['--port'])).message, /^--port: needs a value/)
    assert.match(configError(() => load({}, ['--port', '--host', '::1'])).message, /^--port: needs a value/)
    assert.match(configError(() => load({}, ['8080'])).message, /unexpected argument/)
  })
})

describe('secrets never show', () => {
  const SECRET = 'hunter2-TOP-secret'

  it('not in validation messages', () => {
    const messages = [
      configError(() => load({ SIGNING_SECRET: `${SECRET}\n` })).message,
      configError(() => load({ TRAFFIC_API_KEY: ` ${SECRET}` })).message,
      configError(() => load({}, [`--admin-token=${SECRET}\t`])).message,
      configError(() => load({ STORE_URL: `redis://:${SECRET}@` })).message,
      configError(() => load({ STORE_URL: `mysql://root:${SECRET}@db` })).message,
      configError(() => load({ TRAFFIC_REPORT_URL: `ftp://user:${SECRET}@billing.example` })).message,
      configError(() => load({ ORIGIN_URL: `https://user:${SECRET}@media.example/?token=1` })).message,
      configError(() => load({ SIGNING_SECRET: `${SECRET}\n`, PORT: 'x', TRAFFIC_API_KEY: `${SECRET} ` })).message,
      configError(() => load({}, ['--signing-secret', SECRET, '--frob'])).message,
      configError(() => load({}, ['--signing-secret', SECRET, 'stray'])).message
    ]
    for (const m of messages) assert.ok(!m.includes('hunter2'), m)
    assert.match(messages[0] ?? '', /^SIGNING_SECRET: must be a single token/)
    assert.match(messages[1] ?? '', /^TRAFFIC_API_KEY: must be a single token/)
    assert.match(messages[2] ?? '', /^ADMIN_TOKEN: must be a single token/)
  })

  it('refuses whitespace anywhere in a secret, and control characters', () => {
    for (const value of ['a b', 'a\tb', 'a\nb', 'a\u00a0b', 'a\u2003b', 'ab ']) {
      assert.match(configError(() => load({ ADMIN_TOKEN: value })).message, /^ADMIN_TOKEN: must be a single token, without spaces or other whitespace \(from the environment\)$/)
    }
    assert.match(configError(() => load({ ADMIN_TOKEN: 'a\u0000b' })).message, /^ADMIN_TOKEN: must not contain control characters/)
  })

  it('keeps a secret exactly as given (not trimmed, not lower-cased)', () => {
    assert.equal(load({ SIGNING_SECRET: 'Mixed-Case/inside+=' }).signingSecret, 'Mixed-Case/inside+=')
  })

  it('not in describeConfig, which still says what is set', () => {
    const c = load({
      SIGNING_SECRET: `${SECRET}-s`,
      ADMIN_TOKEN: `${SECRET}-a`,
      TRAFFIC_API_KEY: `${SECRET}-k`,
      STORE_URL: `redis://default:${SECRET}-r@cache.example:6379/2`,
      TRAFFIC_REPORT_URL: `https://bill:${SECRET}-u@billing.example/usage?key=${SECRET}-q`,
      ORIGIN_URL: `https://media:${SECRET}-o@media.example/base`
    })
    const shown = describeConfig(c)
    const text = JSON.stringify(shown)
    assert.ok(!text.includes('hunter2'), text)
    assert.equal(shown['signingSecret'], '[redacted]')
    assert.equal(shown['adminToken'], '[redacted]')
    assert.equal(shown['trafficApiKey'], '[redacted]')
    assert.equal(shown['storeUrl'], 'redis://default:[redacted]@cache.example:6379/2')
    assert.equal(shown['trafficReportUrl'], 'https://billing.example/usage?…')
    assert.deepEqual(shown['origin'], { kind: 'http', url: 'https://media.example/base' })
    assert.equal(shown['trafficMinBytes'], 1048576)
    const unset = describeConfig(load())
    assert.equal(unset['signingSecret'], null)
    assert.equal(unset['trafficReportUrl'], null)
  })
})

describe('toMeterOptions', () => {
  it('maps the TRAFFIC_* settings onto the library\'s options', () => {
    const c = load({
      TRAFFIC_MIN_BYTES: '10',
      TRAFFIC_REPORT_INTERVAL: '2',
      TRAFFIC_ACCUMULATOR_TIMEOUT: '4',
      TRAFFIC_FLUSH_INTERVAL: '0.5',
      TRAFFIC_MAX_IPS: '3',
      TRAFFIC_MAX_SESSIONS: '2',
      TRAFFIC_REPORT_MAX_UIDS: '7',
      TRAFFIC_REPORT_MAX_BYTES: '100000',
      TRAFFIC_REPORT_MAX_REJECTIONS: '9',
      TRAFFIC_REPORT_TIMEOUT: '5',
      TRAFFIC_FLUSH_MAX_UIDS: '99',
      TRAFFIC_MEMORY_MAX_UIDS: '999',
      TRAFFIC_REPORT_URL: 'http://127.0.0.1:1/r',
      TRAFFIC_API_KEY: 'k'
    })
    const o = resolveMeterOptions(toMeterOptions(c))
    assert.equal(o.minBytes, 10)
    assert.equal(o.reportInterval, 2)
    assert.equal(o.accumulatorTimeout, 4)
    assert.equal(o.flushInterval, 0.5)
    assert.equal(o.maxIps, 3)
    assert.equal(o.maxSessions, 2)
    assert.equal(o.reportMaxUids, 7)
    assert.equal(o.reportMaxBytes, 100000)
    assert.equal(o.reportMaxRejections, 9)
    assert.equal(o.reportTimeout, 5)
    assert.equal(o.flushMaxUids, 99)
    assert.equal(o.memoryMaxUids, 999)
    assert.equal(o.reportUrl, 'http://127.0.0.1:1/r')
    assert.equal(o.apiKey, 'k')
    assert.equal(o.retryBase, 1)
    assert.equal(o.retryCap, 300)
  })
})

describe('docs/configuration.md', () => {
  const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8')
  /** The text of a setting's entry: from its heading to the next heading. */
  const entryOf = (name: string): string => {
    const at = doc.search(new RegExp(`^#{3,4} \`${name}\``, 'm'))
    if (at === -1) return ''
    const next = doc.slice(at + 1).search(/^#{2,4} /m)
    return next === -1 ? doc.slice(at) : doc.slice(at, at + 1 + next)
  }

  it('has an entry for every setting', () => {
    for (const name of SETTING_NAMES) {
      assert.ok(entryOf(name) !== '', `no entry for ${name}`)
      assert.ok(doc.includes(`\`${flagOf(name)}\``), `no flag for ${name}`)
    }
  })

  it('gives every duration, size and count a bound, the bound the schema enforces', () => {
    for (const name of SETTING_NAMES) {
      const entry = entryOf(name)
      const type = /Type: ([^·\n]+)/.exec(entry)?.[1] ?? ''
      if (!/seconds|bytes|integer/.test(type)) continue
      const bound = /^- Bound: at most `(\d+)`/m.exec(entry)?.[1]
      assert.ok(bound !== undefined, `${name} (${type.trim()}) has no "Bound: at most \`N\`" line`)
      assert.doesNotThrow(() => load({ [name]: bound }), `${name} refuses its documented bound ${bound}`)
      const past = /seconds/.test(type) ? `${bound}.5` : String(BigInt(bound) + 1n)
      const err = configError(() => load({ [name]: past }))
      assert.equal(err.setting, name)
      assert.match(err.message, new RegExp(`must be at most ${bound}\\b`), err.message)
    }
  })
})

it('variables injected by Kubernetes service links are not even warned about', () => {
  const { config, warnings } = loadConfig({
    env: {
      ORIGIN_SERVICE_HOST: '10.0.0.9',
      ORIGIN_SERVICE_PORT: '80',
      ORIGIN_SERVICE_PORT_HTTP: '80',
      ORIGIN_PORT: 'tcp://10.0.0.9:80',
      STORE_PORT_6379_TCP: 'tcp://10.0.0.8:6379',
      STORE_PORT_6379_TCP_ADDR: '10.0.0.8',
      STORE_PORT_6379_TCP_PORT: '6379',
      STORE_PORT_6379_TCP_PROTO: 'tcp'
    },
    argv: [],
    cwd: tmpdir()
  })
  assert.equal(config.origin.kind, 'demo')
  assert.deepEqual(warnings, [])
  assert.deepEqual(loadConfig({ env: { ORIGIN_PORTS: '1' }, argv: [], cwd: tmpdir() }).warnings.map((w) => w.variable), ['ORIGIN_PORTS'])
})
