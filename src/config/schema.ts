import { isIP } from 'node:net'
import { fileURLToPath } from 'node:url'
import { z } from 'zod'
import {
  METER_DEFAULTS, REPORT_MAX_BYTES_MAX, REPORT_MAX_BYTES_MIN, REPORT_MAX_REJECTIONS_MAX, redactUrl
} from '../meter/index.ts'
import type { MeterOptions } from '../meter/index.ts'
import { redactRedisUrl } from '../store/index.ts'
import {
  Invalid, boolean, corsOrigin, fileExtension, hostHeader, httpUrl, integer, list, proxyEntry, publicHost, seconds, secret, setting, storeUrl
} from './value-parsers.ts'

/**
 * The one configuration schema (docs/configuration.md). Its input is the
 * settings as strings, keyed by environment variable name (the name every
 * message, flag and doc uses); its output is the resolved {@link Config}.
 * Sources, flags, paths and freezing are load.ts's job; this file and the
 * parsers of value-parsers.ts only say what a valid value is.
 */

/** The engines (docs/engines.md). */
export const ENGINES = ['node', 'nginx'] as const

/** pino's levels, `silent` included. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

/** Every default in one place, with units. Keys are the environment variable names. */
export const CONFIG_DEFAULTS = Object.freeze({
  PORT: 8080, // TCP port; 0 takes a free one
  HOST: '::', // every interface, IPv6 and (dual-stack) IPv4
  ORIGIN_ROOT: undefined, // directory; with neither ORIGIN_ROOT nor ORIGIN_URL: the bundled demo media
  ORIGIN_URL: undefined, // http(s) base URL
  ORIGIN_TIMEOUT: 10, // seconds for the origin to answer with headers (a wait for a connection included), then 504
  ORIGIN_HOST_HEADER: undefined, // Host sent to ORIGIN_URL; unset: the URL's own host
  ORIGIN_MAX_CONNECTIONS: 256, // connections to ORIGIN_URL per process; more requests wait (within ORIGIN_TIMEOUT)
  STORE_URL: 'sqlite:./data/streammeter.db', // relative to the working directory
  STORE_PREFIX: 'streammeter', // key prefix in a shared (redis) store
  SIGNING_SECRET: undefined, // without it the `uid` parameter is trusted (development only)
  TRUSTED_PROXIES: Object.freeze([]) as readonly string[], // CIDRs or addresses
  ACCESS_ALLOW_CIDRS: Object.freeze([]) as readonly string[], // client networks let in without a check (CIDRs or addresses)
  ACCESS_API_KEY: undefined, // the access API (file checks) is off without it
  ACCESS_OPEN_EXTENSIONS: Object.freeze([]) as readonly string[], // file extensions served without a check (e.g. ts,m4s)
  SESSION_TTL: 7200, // seconds a session lives after its last use (sliding)
  GRANT_TTL: 3600, // seconds a grant (POST /api/whitelist) lives
  GRANT_MAX_PER_UID: 5, // network+User-Agent pairs one uid may hold grants for; the oldest goes beyond
  GRANT_MAX_PATHS_PER_NETWORK: 3, // directories one uid may hold grants for in one network; the oldest goes beyond
  KEY_MAX_USES: undefined, // GETs one signed key-file URL (or one session, per key file) may make; unset: no limit
  PLAYLIST_MAX_USES: undefined, // GETs one signed playlist URL (or one session, per playlist) may make; unset: no limit
  CORS_ORIGINS: Object.freeze(['*']) as readonly string[], // any origin, never with credentials
  ADMIN_TOKEN: undefined, // without it admin endpoints answer loopback clients only
  TRAFFIC_COLLECTOR_ENABLED: true,
  TRAFFIC_REPORT_URL: undefined, // without it reports wait in the outbox
  TRAFFIC_API_KEY: undefined,
  TRAFFIC_MIN_BYTES: METER_DEFAULTS.minBytes, // bytes (1 MiB)
  TRAFFIC_REPORT_INTERVAL: METER_DEFAULTS.reportInterval, // seconds (5 min)
  TRAFFIC_ACCUMULATOR_TIMEOUT: METER_DEFAULTS.accumulatorTimeout, // seconds (10 min)
  TRAFFIC_FLUSH_INTERVAL: METER_DEFAULTS.flushInterval, // seconds
  TRAFFIC_MAX_IPS: METER_DEFAULTS.maxIps, // addresses per uid and cycle
  TRAFFIC_MAX_SESSIONS: METER_DEFAULTS.maxSessions, // session ids per uid and cycle
  TRAFFIC_REPORT_MAX_UIDS: METER_DEFAULTS.reportMaxUids, // uids per report part
  TRAFFIC_REPORT_MAX_BYTES: METER_DEFAULTS.reportMaxBytes, // bytes of JSON per report part (512 KiB)
  TRAFFIC_REPORT_MAX_REJECTIONS: METER_DEFAULTS.reportMaxRejections, // refusals (lasting 4xx) before a report is parked
  TRAFFIC_REPORT_TIMEOUT: METER_DEFAULTS.reportTimeout, // seconds per delivery attempt
  TRAFFIC_FLUSH_MAX_UIDS: METER_DEFAULTS.flushMaxUids, // uids in process memory before an early flush
  TRAFFIC_MEMORY_MAX_UIDS: METER_DEFAULTS.memoryMaxUids, // uids kept in memory while the store is down; new ones beyond are dropped (counted)
  SHUTDOWN_GRACE: 30, // seconds for in-flight streams and the last delivery
  SEND_TIMEOUT: 60, // seconds a client may take no bytes while a write waits for it; then it is disconnected
  MAX_TRANSFERS_PER_IP: 64, // concurrent media responses per client IP; beyond: 429
  PLAYLIST_MAX_BYTES: 1024 * 1024, // bytes of origin playlist rewritten (1 MiB); larger: 502
  PUBLIC_HOSTS: Object.freeze([]) as readonly string[], // host[:port] names clients reach the proxy by; none: absolute playlist URIs are left alone
  LOG_LEVEL: 'info' as (typeof LOG_LEVELS)[number],
  WORKERS: 1, // processes (node engine) or nginx worker processes (nginx engine); 0 = one per CPU core
  ENGINE: 'node' as (typeof ENGINES)[number], // who moves the bytes: node (one Node process) or nginx
  ENGINE_DIR: './data/nginx', // the nginx engine's files (configuration, access log, pid); relative to the working directory
  NGINX_BIN: 'nginx' // the nginx binary of the nginx engine, a path or a name on PATH
})

/**
 * The bundled demo media, served when no origin is set. Two levels above this
 * file both in `src/config/` and in `dist/config/`.
 */
export const DEMO_MEDIA_ROOT: string = fileURLToPath(new URL('../../examples/media', import.meta.url))

const D = CONFIG_DEFAULTS

/** The settings: environment variable name → validator, default and one line of help. */
const settingsShape = {
  PORT: integer(0, 65535, 'a TCP port number').default(D.PORT)
    .describe('TCP port to listen on (0 takes a free port)'),
  HOST: setting((s) => isIP(s) !== 0 || /^[A-Za-z0-9.-]+$/.test(s) ? s : new Invalid('must be an IP address or a host name')).default(D.HOST)
    .describe('address to listen on'),
  ORIGIN_ROOT: setting((s) => s).optional()
    .describe('directory to serve media from (relative to the working directory)'),
  ORIGIN_URL: setting((s) => httpUrl(s, true)).optional()
    .describe('http(s) base URL to proxy media from (instead of ORIGIN_ROOT)'),
  // An origin silent for an hour is down; a player gave up long before.
  ORIGIN_TIMEOUT: seconds(3600).default(D.ORIGIN_TIMEOUT)
    .describe('seconds the origin may take to answer with headers before a 504'),
  ORIGIN_HOST_HEADER: setting(hostHeader).optional()
    .describe('Host header sent to ORIGIN_URL instead of its own host (host[:port])'),
  // Each is a socket and its buffers; past a few thousand a second origin
  // (or a CDN) is the answer, not more connections to one.
  ORIGIN_MAX_CONNECTIONS: integer(1, 16384, 'a positive integer').default(D.ORIGIN_MAX_CONNECTIONS)
    .describe('most connections to ORIGIN_URL; further requests wait for one within ORIGIN_TIMEOUT'),
  STORE_URL: setting(storeUrl).default(D.STORE_URL)
    .describe('where usage and undelivered reports live: memory:, sqlite:PATH, redis://…, redis+sentinel://… or redis+cluster://…'),
  STORE_PREFIX: setting((s) => /^[A-Za-z0-9:_.-]+$/.test(s) ? s : new Invalid('must be letters, digits and : _ . - only')).default(D.STORE_PREFIX)
    .describe('key prefix in a shared store'),
  SIGNING_SECRET: secret().optional()
    .describe('HMAC secret for signed URLs; when set every media request must be signed'),
  TRUSTED_PROXIES: setting((s) => list(s, proxyEntry)).default(D.TRUSTED_PROXIES as string[])
    .describe('comma-separated CIDRs or addresses whose X-Forwarded-For is believed'),
  ACCESS_ALLOW_CIDRS: setting((s) => list(s, proxyEntry)).default(D.ACCESS_ALLOW_CIDRS as string[])
    .describe('comma-separated client networks (CIDRs or addresses) let in without a token; their uid parameter is believed'),
  ACCESS_OPEN_EXTENSIONS: setting((s) => list(s, fileExtension)).default(D.ACCESS_OPEN_EXTENSIONS as string[])
    .describe('comma-separated file extensions (.ts,.m4s) served without a token when no other access mode applies; not metered then'),
  SESSION_TTL: seconds(7 * 86400).default(D.SESSION_TTL)
    .describe('seconds a session (cookie session_id_fileserver) lives after its last use'),
  GRANT_TTL: seconds(7 * 86400).default(D.GRANT_TTL)
    .describe('seconds a grant made with POST /api/whitelist lives'),
  GRANT_MAX_PER_UID: integer(1, 1000, 'an integer from 1 to 1000').default(D.GRANT_MAX_PER_UID)
    .describe('network+User-Agent pairs one uid may hold grants for; the oldest pair is dropped beyond'),
  GRANT_MAX_PATHS_PER_NETWORK: integer(1, 1000, 'an integer from 1 to 1000').default(D.GRANT_MAX_PATHS_PER_NETWORK)
    .describe('directories one uid may hold grants for in one network; the oldest is dropped beyond'),
  KEY_MAX_USES: integer(1, 1_000_000, 'an integer from 1 to 1000000').optional()
    .describe('how often one signed key-file URL (or one session, per key file) may be fetched; unset: no limit'),
  PLAYLIST_MAX_USES: integer(1, 1_000_000, 'an integer from 1 to 1000000').optional()
    .describe('how often one signed playlist URL (or one session, per playlist) may be fetched; unset: no limit'),
  ACCESS_API_KEY: secret().optional()
    .describe('key of the access API (/api/file/check, /api/whitelist): Authorization: Bearer <key>, or the bare key; when set, an unsigned uid is no longer trusted'),
  CORS_ORIGINS: setting((s) => {
    const origins = list(s, corsOrigin)
    if (origins instanceof Invalid) return origins
    if (origins.length === 0) return new Invalid('must be * or a comma-separated list of origins')
    if (origins.includes('*') && origins.length > 1) return new Invalid('* allows every origin: use it alone')
    return origins
  }).default(D.CORS_ORIGINS as string[])
    .describe('comma-separated origins allowed to read media from a browser, or *'),
  ADMIN_TOKEN: secret().optional()
    .describe('bearer token for the admin endpoints; without it they answer loopback only'),
  TRAFFIC_COLLECTOR_ENABLED: boolean().default(D.TRAFFIC_COLLECTOR_ENABLED)
    .describe('meter and report traffic'),
  TRAFFIC_REPORT_URL: setting((s) => httpUrl(s, false)).optional()
    .describe('where usage reports are POSTed'),
  TRAFFIC_API_KEY: secret().optional()
    .describe('sent to TRAFFIC_REPORT_URL as Authorization: Bearer'),
  // 1 TiB: a uid must reach it within one cycle (TRAFFIC_ACCUMULATOR_TIMEOUT,
  // at most 7 days: 1 TiB is 14.5 Mbit/s for the whole week); past it nobody
  // would ever be reported.
  TRAFFIC_MIN_BYTES: integer(0, 2 ** 40, 'a non-negative integer (bytes)').default(D.TRAFFIC_MIN_BYTES)
    .describe('bytes a uid must reach in a cycle to be reported; 0 reports every byte'),
  // A day: billing windows longer than that hold a day of usage per report.
  TRAFFIC_REPORT_INTERVAL: seconds(86400).default(D.TRAFFIC_REPORT_INTERVAL)
    .describe('seconds between report windows'),
  // A week of sub-threshold usage kept per uid, in memory and in the store.
  TRAFFIC_ACCUMULATOR_TIMEOUT: seconds(604800).default(D.TRAFFIC_ACCUMULATOR_TIMEOUT)
    .describe('seconds after which sub-threshold usage is discarded (and counted)'),
  // An hour: the most a crash may lose (docs/metering.md); also the tick of seals and expiry.
  TRAFFIC_FLUSH_INTERVAL: seconds(3600).default(D.TRAFFIC_FLUSH_INTERVAL)
    .describe('seconds between flushes of usage to the store (what a crash can lose)'),
  // Kept in every record of a cycle (about 40 bytes each, in memory and in the store).
  TRAFFIC_MAX_IPS: integer(1, 1000, 'a positive integer').default(D.TRAFFIC_MAX_IPS)
    .describe('distinct client IPs kept per uid and cycle'),
  TRAFFIC_MAX_SESSIONS: integer(1, 1000, 'a positive integer').default(D.TRAFFIC_MAX_SESSIONS)
    .describe('distinct session ids kept per uid and cycle'),
  // A part is rendered and stored whole: 100,000 uids is about 40 MB of JSON.
  TRAFFIC_REPORT_MAX_UIDS: integer(1, 100000, 'a positive integer').default(D.TRAFFIC_REPORT_MAX_UIDS)
    .describe('uids per report; larger windows are split into parts'),
  TRAFFIC_REPORT_MAX_BYTES: integer(REPORT_MAX_BYTES_MIN, REPORT_MAX_BYTES_MAX,
    `an integer from ${REPORT_MAX_BYTES_MIN} to ${REPORT_MAX_BYTES_MAX} (bytes)`).default(D.TRAFFIC_REPORT_MAX_BYTES)
    .describe('bytes of JSON per report; larger windows are split into parts (a receiver answering 413 splits further)'),
  TRAFFIC_REPORT_MAX_REJECTIONS: integer(1, REPORT_MAX_REJECTIONS_MAX, `an integer from 1 to ${REPORT_MAX_REJECTIONS_MAX}`)
    .default(D.TRAFFIC_REPORT_MAX_REJECTIONS)
    .describe('refusals (a lasting 4xx) after which a report is parked and delivery moves on (streammeter outbox)'),
  TRAFFIC_REPORT_TIMEOUT: seconds(3600).default(D.TRAFFIC_REPORT_TIMEOUT)
    .describe('seconds one delivery attempt may take'),
  // About 150 bytes per uid in process memory: 10 million is 1.5 GB.
  TRAFFIC_FLUSH_MAX_UIDS: integer(1, 10_000_000, 'a positive integer').default(D.TRAFFIC_FLUSH_MAX_UIDS)
    .describe('distinct uids held in memory before an early flush'),
  TRAFFIC_MEMORY_MAX_UIDS: integer(1, 10_000_000, 'a positive integer').default(D.TRAFFIC_MEMORY_MAX_UIDS)
    .describe('distinct uids kept in memory while the store is unavailable; usage of further new uids is dropped and counted'),
  // Longer than any orchestrator waits before SIGKILL (Kubernetes: 30 s by default).
  SHUTDOWN_GRACE: seconds(3600).default(D.SHUTDOWN_GRACE)
    .describe('seconds a graceful stop waits for streams and the last delivery'),
  SEND_TIMEOUT: seconds(3600).default(D.SEND_TIMEOUT)
    .describe('seconds a client may take no bytes while a response waits for it, then it is disconnected (at most 3600)'),
  MAX_TRANSFERS_PER_IP: integer(1, 1_000_000, 'an integer from 1 to 1000000').default(D.MAX_TRANSFERS_PER_IP)
    .describe('concurrent media responses per client IP; beyond them 429'),
  PLAYLIST_MAX_BYTES: integer(1, 64 * 1024 * 1024, 'an integer from 1 to 67108864 (bytes)').default(D.PLAYLIST_MAX_BYTES)
    .describe('largest origin playlist rewritten, in bytes; a larger one is a 502'),
  PUBLIC_HOSTS: setting((s) => {
    const hosts = list(s, publicHost)
    if (hosts instanceof Invalid) return hosts
    return hosts.length > 64 ? new Invalid('at most 64 host names') : hosts
  }).default(D.PUBLIC_HOSTS as string[])
    .describe('comma-separated host[:port] names clients reach the proxy by; absolute playlist URIs on them are signed'),
  LOG_LEVEL: setting((s) => {
    const level = LOG_LEVELS.find((l) => l === s.toLowerCase())
    return level ?? new Invalid(`must be one of ${LOG_LEVELS.join(', ')}`)
  }).default(D.LOG_LEVEL)
    .describe(`log level: ${LOG_LEVELS.join(', ')}`),
  WORKERS: integer(0, 1024, 'a non-negative integer; 0 = one per CPU core').default(D.WORKERS)
    .describe('server processes, or nginx worker processes with ENGINE=nginx (0 = one per CPU core)'),
  ENGINE: setting((s) => {
    const engine = ENGINES.find((e) => e === s.toLowerCase())
    return engine ?? new Invalid(`must be one of ${ENGINES.join(', ')}`)
  }).default(D.ENGINE)
    .describe('who moves the bytes: node (everything in this process) or nginx (nginx serves media, this process meters its access log)'),
  ENGINE_DIR: setting((s) => s).default(D.ENGINE_DIR)
    .describe('directory of the nginx engine\'s configuration, access log and pid file (relative to the working directory)'),
  NGINX_BIN: setting((s) => /[\0\n\r]/.test(s) ? new Invalid('must be a path or a command name') : s).default(D.NGINX_BIN)
    .describe('the nginx binary of the nginx engine (Debian: nginx and libnginx-mod-http-js)')
}

/** Name of a setting: its environment variable. */
export type SettingName = keyof typeof settingsShape

/** Every setting, in documentation order. */
export const SETTING_NAMES: readonly SettingName[] = Object.freeze(Object.keys(settingsShape) as SettingName[])

/** Settings whose values are never shown: not in messages, not in {@link describeConfig}. */
export const SECRET_SETTINGS: ReadonlySet<SettingName> = new Set<SettingName>(['SIGNING_SECRET', 'TRAFFIC_API_KEY', 'ADMIN_TOKEN'])

/** Settings whose bad values are not repeated in messages (URLs may carry credentials). */
export const UNECHOED_SETTINGS: ReadonlySet<SettingName> = new Set<SettingName>([...SECRET_SETTINGS, 'STORE_URL', 'ORIGIN_URL', 'TRAFFIC_REPORT_URL'])

/** Settings that are true/false (a bare `--flag` means true). */
export const BOOLEAN_SETTINGS: ReadonlySet<SettingName> = new Set<SettingName>(['TRAFFIC_COLLECTOR_ENABLED'])

/** The one-line help of a setting. */
export function settingHelp (name: SettingName): string {
  return settingsShape[name].description ?? ''
}

/** The `streammeter serve` flag of a setting: `TRAFFIC_MIN_BYTES` → `--traffic-min-bytes`. */
export function flagOf (name: SettingName): string {
  return '--' + name.toLowerCase().replaceAll('_', '-')
}

/** Where media comes from. `demo` is the bundled `examples/media`, used when no origin is set. */
export type OriginConfig =
  | { readonly kind: 'demo', readonly root: string }
  | { readonly kind: 'fs', readonly root: string }
  | { readonly kind: 'http', readonly url: string }

/**
 * The schema: settings as strings (unset = absent) → resolved configuration.
 * Keys of the result are the camelCased variable names, except that
 * `ORIGIN_ROOT`/`ORIGIN_URL` become `origin`.
 */
export const configSchema = z.strictObject(settingsShape)
  .superRefine((s, ctx) => {
    if (s.ORIGIN_ROOT !== undefined && s.ORIGIN_URL !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['ORIGIN_URL'], message: 'set either ORIGIN_ROOT or ORIGIN_URL, not both' })
    }
  })
  .transform((s) => ({
    port: s.PORT,
    host: s.HOST,
    origin: (s.ORIGIN_URL !== undefined
      ? { kind: 'http', url: s.ORIGIN_URL }
      : s.ORIGIN_ROOT !== undefined ? { kind: 'fs', root: s.ORIGIN_ROOT } : { kind: 'demo', root: DEMO_MEDIA_ROOT }) as OriginConfig,
    originTimeout: s.ORIGIN_TIMEOUT,
    originHostHeader: s.ORIGIN_HOST_HEADER,
    originMaxConnections: s.ORIGIN_MAX_CONNECTIONS,
    storeUrl: s.STORE_URL,
    storePrefix: s.STORE_PREFIX,
    signingSecret: s.SIGNING_SECRET,
    trustedProxies: s.TRUSTED_PROXIES as readonly string[],
    accessAllowCidrs: s.ACCESS_ALLOW_CIDRS as readonly string[],
    accessApiKey: s.ACCESS_API_KEY,
    accessOpenExtensions: s.ACCESS_OPEN_EXTENSIONS as readonly string[],
    sessionTtl: s.SESSION_TTL,
    grantTtl: s.GRANT_TTL,
    grantMaxPerUid: s.GRANT_MAX_PER_UID,
    grantMaxPathsPerNetwork: s.GRANT_MAX_PATHS_PER_NETWORK,
    keyMaxUses: s.KEY_MAX_USES,
    playlistMaxUses: s.PLAYLIST_MAX_USES,
    corsOrigins: s.CORS_ORIGINS as readonly string[],
    adminToken: s.ADMIN_TOKEN,
    trafficCollectorEnabled: s.TRAFFIC_COLLECTOR_ENABLED,
    trafficReportUrl: s.TRAFFIC_REPORT_URL,
    trafficApiKey: s.TRAFFIC_API_KEY,
    trafficMinBytes: s.TRAFFIC_MIN_BYTES,
    trafficReportInterval: s.TRAFFIC_REPORT_INTERVAL,
    trafficAccumulatorTimeout: s.TRAFFIC_ACCUMULATOR_TIMEOUT,
    trafficFlushInterval: s.TRAFFIC_FLUSH_INTERVAL,
    trafficMaxIps: s.TRAFFIC_MAX_IPS,
    trafficMaxSessions: s.TRAFFIC_MAX_SESSIONS,
    trafficReportMaxUids: s.TRAFFIC_REPORT_MAX_UIDS,
    trafficReportMaxBytes: s.TRAFFIC_REPORT_MAX_BYTES,
    trafficReportMaxRejections: s.TRAFFIC_REPORT_MAX_REJECTIONS,
    trafficReportTimeout: s.TRAFFIC_REPORT_TIMEOUT,
    trafficFlushMaxUids: s.TRAFFIC_FLUSH_MAX_UIDS,
    trafficMemoryMaxUids: s.TRAFFIC_MEMORY_MAX_UIDS,
    shutdownGrace: s.SHUTDOWN_GRACE,
    sendTimeout: s.SEND_TIMEOUT,
    maxTransfersPerIp: s.MAX_TRANSFERS_PER_IP,
    playlistMaxBytes: s.PLAYLIST_MAX_BYTES,
    publicHosts: s.PUBLIC_HOSTS as readonly string[],
    logLevel: s.LOG_LEVEL,
    workers: s.WORKERS,
    engine: s.ENGINE,
    engineDir: s.ENGINE_DIR,
    nginxBin: s.NGINX_BIN
  }))

/** The settings as the schema takes them: strings by variable name. */
export type ConfigInput = z.input<typeof configSchema>

/**
 * The resolved, deep-frozen configuration (from `loadConfig`). Durations in
 * seconds, sizes in bytes, paths absolute.
 */
export type Config = Readonly<z.infer<typeof configSchema>>

/** The metering library's options for `config` (retry timing and worker id keep their defaults). */
export function toMeterOptions (config: Config): MeterOptions {
  return {
    ...METER_DEFAULTS,
    minBytes: config.trafficMinBytes,
    reportInterval: config.trafficReportInterval,
    accumulatorTimeout: config.trafficAccumulatorTimeout,
    flushInterval: config.trafficFlushInterval,
    maxIps: config.trafficMaxIps,
    maxSessions: config.trafficMaxSessions,
    reportMaxUids: config.trafficReportMaxUids,
    reportMaxBytes: config.trafficReportMaxBytes,
    reportMaxRejections: config.trafficReportMaxRejections,
    reportUrl: config.trafficReportUrl,
    apiKey: config.trafficApiKey,
    reportTimeout: config.trafficReportTimeout,
    flushMaxUids: config.trafficFlushMaxUids,
    memoryMaxUids: config.trafficMemoryMaxUids
  }
}

const REDACTED = '[redacted]'

/** A store URL with any password and query replaced (redis URLs may hold one in either). */
export function redactStoreUrl (url: string): string {
  return /^redis/i.test(url) ? redactRedisUrl(url) : url
}

/**
 * `config` as a plain object for the startup log: secrets replaced by
 * `[redacted]` (or null when unset), URLs without credentials or query.
 */
export function describeConfig (config: Config): Record<string, unknown> {
  const secretShown = (v: string | undefined): string | null => v === undefined ? null : REDACTED
  const { origin } = config
  return {
    ...config,
    origin: origin.kind === 'http' ? { kind: 'http', url: redactUrl(origin.url) } : { ...origin },
    storeUrl: redactStoreUrl(config.storeUrl),
    signingSecret: secretShown(config.signingSecret),
    trustedProxies: [...config.trustedProxies],
    accessAllowCidrs: [...config.accessAllowCidrs],
    corsOrigins: [...config.corsOrigins],
    publicHosts: [...config.publicHosts],
    adminToken: secretShown(config.adminToken),
    accessApiKey: secretShown(config.accessApiKey),
    accessOpenExtensions: [...config.accessOpenExtensions],
    trafficReportUrl: redactUrl(config.trafficReportUrl),
    trafficApiKey: secretShown(config.trafficApiKey)
  }
}
