import { chmodSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  BadRequestError, BadSignatureError, HeadersTooLargeError, InternalError, NotFoundError, OriginError, OriginTimeoutError,
  RangeNotSatisfiableError, TooManyTransfersError, UrlExpiredError, errorBody
} from '../../errors.ts'
import type { StreammeterError } from '../../errors.ts'
import { DEFAULT_CONTENT_TYPE, cacheControlFor, contentTypes, fileTypeOf } from '../origin/media-types.ts'
import { ACCESS_LOG_FORMAT } from './access-log-line.ts'
import { originHttpLines, originProxyLines } from './nginx-origin-config.ts'
import { accessLines, clientIpLines, corsMaps, fastPathMaps, openExtensionLines, viaAppLines } from './nginx-request-maps.ts'
import type { NginxHttpOrigin } from './nginx-origin-config.ts'
import { quote, seconds } from './nginx-syntax.ts'

export type { NginxHttpOrigin } from './nginx-origin-config.ts'

/** Where Debian's libnginx-mod-http-js puts the module. */
export const NJS_MODULE_PATH = '/usr/lib/nginx/modules/ngx_http_js_module.so'

/** What the nginx engine's configuration is rendered from. */
export interface NginxConfigOptions {
  /** Address and port nginx listens on for clients (`HOST`, `PORT`). */
  host: string
  port: number
  /** `ORIGIN_ROOT`: the directory nginx serves files from (unused with {@link httpOrigin}). */
  root: string
  /** `ORIGIN_URL` and its settings: media comes from there instead of {@link root}. */
  httpOrigin?: NginxHttpOrigin | undefined
  /**
   * streammeter's private listener: playlists and its own paths are passed
   * to it. Undefined: nginx serves playlists as files and nothing else
   * (the pieces' tests).
   */
  app?: NginxApp | undefined
  /** A unix socket answering nginx's connection counts (`stub_status`) to streammeter. */
  statusSocket?: string | undefined
  /** `CORS_ORIGINS`: `['*']` or exact origins. @default ['*'] */
  corsOrigins?: readonly string[] | undefined
  /** `SEND_TIMEOUT`: seconds a client may take no bytes. @default 60 */
  sendTimeout?: number | undefined
  /** `MAX_TRANSFERS_PER_IP`: media requests in flight per client IP; beyond, 429. @default 64 */
  maxTransfersPerIp?: number | undefined
  /** `TRUSTED_PROXIES`: the client IP of a request from one is the one its `X-Forwarded-For` names. @default [] */
  trustedProxies?: readonly string[] | undefined
  /** `ACCESS_ALLOW_CIDRS`: client networks let in without a token, as in the node engine. @default [] */
  accessAllowCidrs?: readonly string[] | undefined
  /** `SIGNING_SECRET`; without it (and without {@link locked}) the `uid` parameter is trusted, as in the node engine. */
  signingSecret: string | undefined
  /** `ACCESS_API_KEY` is set: without a secret the `uid` parameter still grants nothing. @default false */
  locked?: boolean | undefined
  /** `ACCESS_OPEN_EXTENSIONS` (lower-case, no dot): served without a check when nothing else lets a request in. @default [] */
  openExtensions?: readonly string[] | undefined
  /**
   * `KEY_MAX_USES` is set: key files go to streammeter like playlists,
   * after the same checks, so that their uses are counted in the store. @default false
   */
  keysToApp?: boolean | undefined
  /**
   * Sessions and grants (docs/access.md#sessions): a request njs does not
   * let in that one of them may is passed to streammeter, which decides
   * and answers it (`grants`: `ACCESS_API_KEY` is set, so any refused
   * request may have one). Undefined: neither (no secret, no key).
   */
  viaApp?: { grants: boolean } | undefined
  /** Directory of the pid file and the error log (`ENGINE_DIR`). */
  dir: string
  /** The access log streammeter reads (one line per finished request, access-log-line.ts). */
  accessLog: string
  /** The njs module (nginx/streammeter.js in the package). */
  njsPath: string
  /** Worker processes; 0 = one per core (`auto`). @default 1 */
  workers?: number | undefined
  /** The user workers run as when nginx starts as root. @default nginx's own (`nobody`) */
  user?: string | undefined
  /** The js module's path. @default {@link NJS_MODULE_PATH} */
  njsModule?: string | undefined
}

/** streammeter's private listener, behind nginx. */
export interface NginxApp {
  /** `127.0.0.1:port`. */
  address: string
  /** Proves to streammeter that a request came from this nginx (access/peer.ts). */
  peerKey: string
  /** The paths streammeter answers itself (`OwnPaths.routes()`). */
  ownPaths: { exact: readonly string[], prefixes: readonly string[] }
}

/** The njs module's settings, beside nginx.conf: the module imports it by this name (`js_path`). */
export const NJS_SETTINGS_FILE = 'streammeter-settings.js'

/**
 * The njs module's settings: the signing secret, in hex (any byte of it is
 * safe there), read once when nginx loads its configuration rather than on
 * every request.
 */
export function renderNjsSettings (o: Pick<NginxConfigOptions, 'signingSecret' | 'locked' | 'openExtensions'>): string {
  const secretHex = o.signingSecret === undefined ? '' : Buffer.from(o.signingSecret, 'utf8').toString('hex')
  // A flag only when it is on: njs evaluates this object on every request.
  const flags = [...(o.locked === true ? [', locked: true'] : []), ...((o.openExtensions ?? []).length > 0 ? [', openExtensions: true'] : [])].join('')
  return `// Rendered by streammeter (the nginx engine); edits are overwritten.\nexport default { secretHex: '${secretHex}'${flags} }\n`
}

/**
 * Write nginx.conf and the njs settings into `o.dir`, owner-only: they hold
 * the signing secret and the peer key. Returns nginx.conf's path.
 */
export function writeNginxConfig (o: NginxConfigOptions): string {
  const conf = join(o.dir, 'nginx.conf')
  for (const [file, text] of [[join(o.dir, NJS_SETTINGS_FILE), renderNjsSettings(o)], [conf, renderNginxConfig(o)]] as const) {
    writeFileSync(file, text, { mode: 0o600 })
    // The mode of a file that was already there is not changed by writing it.
    chmodSync(file, 0o600)
  }
  return conf
}

/**
 * The nginx configuration of the nginx engine (docs/engines.md): nginx serves
 * the files itself with sendfile; njs checks signed URLs with the same
 * verdicts and the same JSON errors as the node engine; every finished
 * request is one line of the access log, written unbuffered.
 */
export function renderNginxConfig (o: NginxConfigOptions): string {
  const workers = o.workers === undefined ? '1' : o.workers === 0 ? 'auto' : String(o.workers)
  // Sessions and grants, when the app is there to decide them.
  const via = o.app === undefined ? undefined : o.viaApp
  const lines = [
    '# Rendered by streammeter (the nginx engine); edits are overwritten.',
    `load_module ${quote(o.njsModule ?? NJS_MODULE_PATH)};`,
    ...(o.user === undefined ? [] : [`user ${quote(o.user)};`]),
    `worker_processes ${workers};`,
    `pid ${quote(`${o.dir}/nginx.pid`)};`,
    `error_log ${quote(`${o.dir}/error.log`)} warn;`,
    'daemon off;',
    'events { worker_connections 4096; }',
    'http {',
    '  types {',
    ...typeLines().map((l) => `    ${l}`),
    '  }',
    `  default_type ${quote(DEFAULT_CONTENT_TYPE)};`,
    ...cacheControlMap(),
    '  sendfile on;',
    '  tcp_nopush on;',
    '  server_tokens off;',
    // A missing file is a 404 for the client, not a line in the error log
    // (which would hold the request's signed query string).
    '  log_not_found off;',
    '  merge_slashes off;',
    // A date at or after the last modification is "not modified" (RFC 9110
    // §13.1.3), as the node engine answers (byte-range.ts): nginx's default,
    // `exact`, sends and bills the whole file to a cache that kept the
    // response's Date.
    '  if_modified_since before;',
    // Several ranges get the whole file, a 200, as from the node engine
    // (byte-range.ts, docs/access.md#requests), not a multipart/byteranges 206.
    '  max_ranges 1;',
    '  keepalive_requests 100000;',
    // Node's limit for a request head (16 KiB); past it, the node engine's 431.
    '  large_client_header_buffers 4 16k;',
    `  send_timeout ${seconds(o.sendTimeout ?? 60)};`,
    // nginx's temporary files live in its prefix, not in the system's.
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${quote(`${o.dir}/${t}_temp`)};`),
    // streammeter-settings.js (renderNjsSettings) is found there.
    `  js_path ${quote(o.dir)};`,
    `  js_import sm from ${quote(o.njsPath)};`,
    ...accessLines(o.signingSecret === undefined && o.locked !== true ? [] : o.accessAllowCidrs ?? []),
    ...openExtensionLines(o.openExtensions ?? []),
    '  js_set $sm_uid_checked sm.uid;',
    '  js_set $sm_sid_checked sm.sid;',
    '  js_set $sm_method_error sm.methodError;',
    '  js_set $sm_path_checked sm.pathVerdict;',
    '  js_set $sm_path_error sm.pathError;',
    ...fastPathMaps(o.signingSecret !== undefined, via !== undefined),
    ...(via === undefined ? [] : viaAppLines(via.grants)),
    ...corsMaps(o.corsOrigins ?? ['*']),
    ...clientIpLines(o.trustedProxies ?? []),
    // `$sm_denial` (the log's verdict on a refused request) is set only where a
    // denial is answered; any other request logs it empty, without a warning.
    '  uninitialized_variable_warn off;',
    `  log_format streammeter escape=json '${ACCESS_LOG_FORMAT}';`,
    `  access_log ${quote(o.accessLog)} streammeter;`,
    ...(o.httpOrigin === undefined ? [] : originHttpLines(o.httpOrigin)),
    ...(o.app === undefined ? [] : [`  upstream sm_app { server ${o.app.address}; keepalive 16; }`]),
    '  server {',
    // `::` takes IPv4 too, as Node's dual-stack listener does.
    `    listen ${o.host.includes(':') ? `[${o.host}]` : o.host}:${o.port}${o.host === '::' ? ' ipv6only=off' : ''};`,
    `    root ${quote(o.root)};`,
    // A segment starting with `.` is a 404, as in the node engine
    // (docs/limits.md); first of the regular expressions, so it wins.
    '    location ~ /\\. { if ($sm_path = bad) { return 400; } return 404; }',
    ...(o.app === undefined ? [] : appLocations(o.app, maxPerIp(o), o.keysToApp === true, via !== undefined)),
    '    location / {',
    ...CORS_HEADERS,
    ...accessChecks(maxPerIp(o), via !== undefined),
    ...(o.httpOrigin === undefined
      // Files only: a directory is a 404, as in the node engine (no redirect, no listing).
      ? ['      try_files $uri =404;', '      add_header Cache-Control $sm_cache_control;']
      : originProxyLines(o.httpOrigin)),
    '    }',
    ...DENIALS.map(([verdict, code]) => `    error_page ${code} = @sm_${verdict};`),
    ...(via === undefined ? [] : ['    error_page 466 = @sm_via_app;']),
    '    error_page 429 = @sm_too_many;',
    '    error_page 404 = @sm_not_found;',
    '    error_page 463 = @sm_method;',
    '    error_page 464 = @sm_preflight;',
    // nginx's own refusals of a request line (a path above the root, say)
    // and the path rules above: the node engine's JSON 400.
    // A URI, not a named location: nginx refuses some request lines before
    // it has a URI (`%00`), and cannot redirect those to a named one.
    `    error_page 400 ${BAD_REQUEST_URI};`,
    `    error_page 414 494 =431 ${TOO_LARGE_URI};`,
    `    error_page 500 ${INTERNAL_URI};`,
    '    error_page 416 = @sm_range;',
    ...DENIALS.map(([verdict,, err]) => errorLocation(`@sm_${verdict}`, err, false, [`set $sm_denial ${verdict};`])),
    errorLocation('@sm_not_found', new NotFoundError()),
    errorLocation('@sm_too_many', new TooManyTransfersError(maxPerIp(o))),
    errorLocation('@sm_origin_error', new OriginError()),
    errorLocation('@sm_origin_timeout', new OriginTimeoutError()),
    // The body names the method, as the node engine's does (njs renders it).
    jsonLocation('@sm_method', 405, '$sm_method_error', ['Allow "GET, HEAD, OPTIONS"']),
    jsonLocation(`= ${BAD_REQUEST_URI}`, 400, '$sm_path_error', [], true),
    errorLocation(`= ${TOO_LARGE_URI}`, new HeadersTooLargeError(), true),
    errorLocation(`= ${INTERNAL_URI}`, new InternalError(), true),
    // nginx keeps the 416's `Content-Range: bytes */<size>` through the redirect.
    errorLocation('@sm_range', new RangeNotSatisfiableError()),
    // The node engine's preflight (media/cors.ts).
    '    location @sm_preflight {',
    ...CORS_HEADERS,
    '      add_header Access-Control-Allow-Methods "GET, HEAD, OPTIONS" always;',
    `      add_header Access-Control-Allow-Headers ${quote(CORS_ALLOW_HEADERS)} always;`,
    '      add_header Access-Control-Max-Age 600 always;',
    '      return 204;',
    '    }',
    '  }',
    ...(o.statusSocket === undefined
      ? []
      : [`  server { listen ${quote(`unix:${o.statusSocket}`)}; access_log off; location / { stub_status; } }`]),
    '}',
    ''
  ]
  return lines.join('\n')
}

function maxPerIp (o: NginxConfigOptions): number {
  return o.maxTransfersPerIp ?? 64
}

/** Where nginx's own 400s go (an internal location: a client asking for it gets a 404). */
const BAD_REQUEST_URI = '/_streammeter/bad-request'
const TOO_LARGE_URI = '/_streammeter/too-large'
const INTERNAL_URI = '/_streammeter/internal'

/** As media/cors.ts sends them. */
const CORS_ALLOW_HEADERS = 'Range, If-None-Match, If-Modified-Since, If-Range, X-Session-ID'

/**
 * The CORS headers of media answers, errors included, as media/cors.ts
 * sets them: an empty value is no header at all, so a disallowed origin
 * gets neither header.
 */
const CORS_HEADERS: readonly string[] = [
  '      add_header Access-Control-Allow-Origin $sm_cors_origin always;',
  '      add_header Access-Control-Expose-Headers $sm_cors_expose always;',
  '      add_header Vary $sm_cors_vary always;'
]

/** Verdicts of the njs check that refuse a request: internal status, then the node engine's error. */
const DENIALS: ReadonlyArray<[string, number, StreammeterError]> = [
  ['bad', 460, new BadSignatureError()],
  ['expired', 461, new UrlExpiredError()],
  ['long-uid', 462, new BadRequestError('uid longer than 256 characters')],
  // The client gets the 403 of a bad signature; the log keeps the reason.
  ['ip-mismatch', 465, new BadSignatureError()]
]

/** The method and signature checks every media location starts with; `viaApp`: sessions and grants go to the app. */
function accessChecks (limit: number, viaApp: boolean): string[] {
  return [
    '      if ($request_method = OPTIONS) { return 464; }',
    '      if ($request_method !~ ^(GET|HEAD)$) { return 463; }',
    // The raw path, by the node engine's rules, before nginx's normalised one is used.
    '      if ($sm_path = bad) { return 400; }',
    '      if ($sm_path = hidden) { return 404; }',
    ...(viaApp ? ['      if ($sm_via_app) { return 466; }'] : []),
    ...DENIALS.map(([verdict, code]) => `      if ($sm_access = ${verdict}) { return ${code}; }`),
    // Counted once the checks above let the request through (limit_conn runs after them).
    `      limit_conn sm_per_ip ${limit};`
  ]
}

/**
 * streammeter's own paths (not metered: no log line) and playlists (checked
 * here, rewritten there, metered from this log like any response; key
 * files too with `keys`, for their use limit), passed to its private
 * listener with the client's address and the key that makes streammeter
 * believe it. Unbuffered, so the dashboard's live feed streams.
 */
function appLocations (app: NginxApp, limit: number, keys: boolean, viaApp: boolean): string[] {
  const pass = [
    '      proxy_pass http://sm_app;',
    '      proxy_http_version 1.1;',
    '      proxy_set_header Connection "";',
    '      proxy_set_header Host $http_host;',
    '      proxy_set_header X-Streammeter-Peer $realip_remote_addr;',
    `      proxy_set_header X-Streammeter-Peer-Key ${quote(app.peerKey)};`,
    // The uid streammeter let a request in under, for the log only.
    '      proxy_hide_header X-Streammeter-Uid;',
    '      proxy_buffering off;',
    '      proxy_read_timeout 1h;'
  ]
  // An exact path that is also a prefix is the prefix's (nginx calls the two a duplicate).
  const exact = app.ownPaths.exact.filter((p) => !app.ownPaths.prefixes.includes(p))
  const own = [...exact.map((p) => `= ${quote(p)}`), ...app.ownPaths.prefixes.map((p) => `^~ ${quote(p)}`)].map((location) => [
    `    location ${location} {`,
    '      access_log off;',
    ...pass,
    '    }'
  ].join('\n'))
  return [
    ...own,
    `    location ~* \\.${keys ? '(m3u8|key)' : 'm3u8'}$ {`,
    ...accessChecks(limit, viaApp),
    ...pass,
    '    }',
    // What a session or grant may let in: streammeter decides and answers (docs/access.md#sessions).
    ...(viaApp ? ['    location @sm_via_app {', ...pass, '    }'] : [])
  ]
}

/** A location answering `err` in the JSON shape of docs/errors.md. */
function errorLocation (name: string, err: StreammeterError, internal = false, first: readonly string[] = []): string {
  return jsonLocation(name, err.statusCode, quote(JSON.stringify(errorBody(err))), [], internal, first)
}

/**
 * A named location answering `status` with the JSON `body` (an nginx string
 * or variable) and `headers`; `first`: directives run before the answer.
 */
function jsonLocation (name: string, status: number, body: string, headers: readonly string[] = [], internal = false, first: readonly string[] = []): string {
  return [
    `    location ${name} {`,
    ...(internal ? ['      internal;'] : []),
    ...first.map((d) => `      ${d}`),
    // No types here: the body is JSON whatever the path's extension says.
    '      types { }',
    '      default_type "application/json; charset=utf-8";',
    ...CORS_HEADERS,
    ...['Cache-Control no-store', ...headers].map((h) => `      add_header ${h} always;`),
    `      return ${status} ${body};`,
    '    }'
  ].join('\n')
}

/**
 * `$sm_cache_control`: the node engine's Cache-Control for the request's
 * file type (media-types.ts `cacheControlFor`, docs/access.md#requests):
 * every answer is `private`, or a shared cache in front would serve the
 * next user unmetered. One expression per value over the extensions nginx
 * knows; anything else gets the value of an unknown type.
 */
function cacheControlMap (): string[] {
  const fallback = cacheControlFor(fileTypeOf('file'))
  const byValue = new Map<string, string[]>()
  for (const ext of Object.keys(contentTypes())) {
    const value = cacheControlFor(fileTypeOf(`file.${ext}`))
    if (value !== fallback) byValue.set(value, [...(byValue.get(value) ?? []), ext])
  }
  return [
    '  map $uri $sm_cache_control {',
    `    default ${quote(fallback)};`,
    ...[...byValue].map(([value, exts]) => `    ~*\\.(${exts.join('|')})$ ${quote(value)};`),
    '  }'
  ]
}

/** `types` lines: each content type with its extensions. */
function typeLines (): string[] {
  const byType = new Map<string, string[]>()
  for (const [ext, type] of Object.entries(contentTypes())) byType.set(type, [...(byType.get(type) ?? []), ext])
  return [...byType].map(([type, exts]) => `${quote(type)} ${exts.join(' ')};`)
}
