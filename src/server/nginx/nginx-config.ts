import {
  BadRequestError, BadSignatureError, NotFoundError, OriginError, OriginTimeoutError, UrlExpiredError, errorBody
} from '../../errors.ts'
import type { StreammeterError } from '../../errors.ts'
import { DEFAULT_CONTENT_TYPE, contentTypes } from '../origin/media-types.ts'

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
  /** `SEND_TIMEOUT`: seconds a client may take no bytes. @default 60 */
  sendTimeout?: number | undefined
  /** `SIGNING_SECRET`; without it the `uid` parameter is trusted, as in the node engine. */
  signingSecret: string | undefined
  /** Directory of the pid file and the error log (`ENGINE_DIR`). */
  dir: string
  /** The access log streammeter reads (one JSON object per finished request). */
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

/** An HTTP origin as nginx reaches it (`ORIGIN_URL`, docs/engines.md). */
export interface NginxHttpOrigin {
  url: string
  /** `ORIGIN_HOST_HEADER`. @default the URL's host */
  hostHeader?: string | undefined
  /** `ORIGIN_TIMEOUT` in seconds: to connect, and between two reads. */
  timeout: number
  /** Idle keep-alive connections kept per worker (`ORIGIN_MAX_CONNECTIONS`, at most 1024). */
  connections: number
  /** `TRUSTED_PROXIES`: only their `X-Forwarded-For` is passed on, the peer appended. */
  trustedProxies: readonly string[]
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

/**
 * The fields of one access-log line, as nginx writes them (`escape=json`):
 * `t` unix seconds with ms, `uid` the uid the request is metered under (empty
 * when none or refused), `bytes` body bytes sent (`$body_bytes_sent`),
 * `status`, `method`, `done` (`OK` when nginx finished the response, else
 * empty), `path` the decoded path; and what the client IP and the session
 * are made of, resolved by the reader with the node engine's rules: `ip` the
 * socket peer, `xff` `X-Forwarded-For`, `sidh` `X-Session-ID`, `scookie` the
 * session cookie (only that one: the log holds no other cookie), `sid` the
 * decoded `sid` parameter.
 */
export const ACCESS_LOG_FORMAT = '{"t":$msec,"uid":"$sm_uid","bytes":$body_bytes_sent,"status":$status,' +
  '"method":"$request_method","done":"$request_completion","path":"$uri","ip":"$remote_addr",' +
  '"xff":"$http_x_forwarded_for","sidh":"$http_x_session_id","scookie":"$cookie_session_id_fileserver","sid":"$sm_sid"}'

/**
 * The nginx configuration of the nginx engine (docs/engines.md): nginx serves
 * the files itself with sendfile; njs checks signed URLs with the same
 * verdicts and the same JSON errors as the node engine; every finished
 * request is one line of the access log, written unbuffered.
 */
export function renderNginxConfig (o: NginxConfigOptions): string {
  const workers = o.workers === undefined ? '1' : o.workers === 0 ? 'auto' : String(o.workers)
  const secret = o.signingSecret === undefined ? '' : Buffer.from(o.signingSecret, 'utf8').toString('hex')
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
    '  sendfile on;',
    '  tcp_nopush on;',
    '  server_tokens off;',
    // A missing file is a 404 for the client, not a line in the error log
    // (which would hold the request's signed query string).
    '  log_not_found off;',
    '  merge_slashes off;',
    '  keepalive_requests 100000;',
    `  send_timeout ${seconds(o.sendTimeout ?? 60)};`,
    // nginx's temporary files live in its prefix, not in the system's.
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${quote(`${o.dir}/${t}_temp`)};`),
    `  js_import sm from ${quote(o.njsPath)};`,
    '  js_set $sm_access sm.access;',
    '  js_set $sm_uid sm.uid;',
    '  js_set $sm_sid sm.sid;',
    '  js_set $sm_method_error sm.methodError;',
    // Hex: nginx would read a `$` in the secret as a variable.
    `  js_var $sm_secret_hex ${secret === '' ? '""' : secret};`,
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
    '    location ~ /\\. { return 404; }',
    ...(o.app === undefined ? [] : appLocations(o.app)),
    '    location / {',
    ...accessChecks(),
    ...(o.httpOrigin === undefined
      // Files only: a directory is a 404, as in the node engine (no redirect, no listing).
      ? ['      try_files $uri =404;']
      : originProxyLines(o.httpOrigin)),
    '    }',
    ...DENIALS.map(([verdict, code]) => `    error_page ${code} = @sm_${verdict};`),
    '    error_page 404 = @sm_not_found;',
    '    error_page 463 = @sm_method;',
    ...DENIALS.map(([verdict,, err]) => errorLocation(`@sm_${verdict}`, err)),
    errorLocation('@sm_not_found', new NotFoundError()),
    errorLocation('@sm_origin_error', new OriginError()),
    errorLocation('@sm_origin_timeout', new OriginTimeoutError()),
    // The body names the method, as the node engine's does (njs renders it).
    jsonLocation('@sm_method', 405, '$sm_method_error', ['Allow "GET, HEAD, OPTIONS"']),
    '  }',
    ...(o.statusSocket === undefined
      ? []
      : [`  server { listen ${quote(`unix:${o.statusSocket}`)}; access_log off; location / { stub_status; } }`]),
    '}',
    ''
  ]
  return lines.join('\n')
}

/** Verdicts of the njs check that refuse a request: internal status, then the node engine's error. */
const DENIALS: ReadonlyArray<[string, number, StreammeterError]> = [
  ['bad', 460, new BadSignatureError()],
  ['expired', 461, new UrlExpiredError()],
  ['long-uid', 462, new BadRequestError('uid longer than 256 characters')]
]

/** The method and signature checks every media location starts with. */
function accessChecks (): string[] {
  return [
    '      if ($request_method !~ ^(GET|HEAD)$) { return 463; }',
    ...DENIALS.map(([verdict, code]) => `      if ($sm_access = ${verdict}) { return ${code}; }`)
  ]
}

/**
 * streammeter's own paths (not metered: no log line) and playlists (checked
 * here, rewritten there, metered from this log like any response), passed
 * to its private listener with the client's address and the key that makes
 * streammeter believe it. Unbuffered, so the dashboard's live feed streams.
 */
function appLocations (app: NginxApp): string[] {
  const pass = [
    '      proxy_pass http://sm_app;',
    '      proxy_http_version 1.1;',
    '      proxy_set_header Connection "";',
    '      proxy_set_header Host $http_host;',
    '      proxy_set_header X-Streammeter-Peer $remote_addr;',
    `      proxy_set_header X-Streammeter-Peer-Key ${quote(app.peerKey)};`,
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
    '    location ~* \\.m3u8$ {',
    ...accessChecks(),
    ...pass,
    '    }'
  ]
}

/** The keep-alive upstream of an HTTP origin, and what the media location sends it. */
function originHttpLines (origin: NginxHttpOrigin): string[] {
  const url = new URL(origin.url)
  const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port)
  const basePath = url.pathname.endsWith('/') ? url.pathname : url.pathname + '/'
  const trusted = origin.trustedProxies
  return [
    // `hostname` keeps an IPv6 address's brackets.
    `  upstream sm_origin { server ${url.hostname}:${port}; keepalive ${Math.min(1024, origin.connections)}; keepalive_timeout 60s; }`,
    `  js_var $sm_origin_path_hex ${Buffer.from(basePath).toString('hex')};`,
    `  js_var $sm_origin_query_hex ${url.search.length > 1 ? Buffer.from(url.search.slice(1)).toString('hex') : '""'};`,
    '  js_set $sm_origin_uri sm.originUri;',
    // A trusted proxy's X-Forwarded-For is passed on with the peer
    // appended; anyone else's is replaced by the peer (forwarding.ts).
    '  geo $sm_trusted_peer {',
    '    default 0;',
    ...trusted.map((cidr) => `    ${cidr} 1;`),
    '  }',
    '  map $sm_trusted_peer $sm_forwarded_for { 1 $proxy_add_x_forwarded_for; default $remote_addr; }',
    '  map $sm_trusted_peer $sm_forwarded_proto { 1 $http_x_forwarded_proto; default http; }',
    `  proxy_connect_timeout ${seconds(origin.timeout)};`,
    `  proxy_read_timeout ${seconds(origin.timeout)};`,
    ...(url.protocol === 'https:'
      ? ['  proxy_ssl_server_name on;', `  proxy_ssl_name ${quote(url.hostname)};`, '  proxy_ssl_verify on;',
          "  proxy_ssl_trusted_certificate '/etc/ssl/certs/ca-certificates.crt';"]
      : [])
  ]
}

/**
 * The media location's side of an HTTP origin: streamed from memory buffers
 * (never spilled to a temporary file), identity encoding, the node engine's
 * request headers, and its answers to the origin's errors (a 404 or 410 is
 * a 404; any other failure a 502, a timeout a 504).
 */
function originProxyLines (origin: NginxHttpOrigin): string[] {
  const url = new URL(origin.url)
  const failed: number[] = []
  // 499 is nginx's own code for a client that left; error_page refuses it
  // ("invalid value"), and nginx -t with it refuses the whole configuration.
  for (let code = 300; code < 600; code++) if (![304, 404, 410, 416, 499, 504].includes(code)) failed.push(code)
  // The base URL's user and password, as the node engine sends them.
  const auth = url.username === '' && url.password === ''
    ? undefined
    : Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')
  return [
    `      proxy_pass ${url.protocol === 'https:' ? 'https' : 'http'}://sm_origin$sm_origin_uri;`,
    '      proxy_http_version 1.1;',
    '      proxy_max_temp_file_size 0;',
    // Four 64 KiB buffers (256 KiB per response, what the node engine holds
    // for a slow download) instead of eight pages: the default 4 KiB reads
    // and writes cost a 64 MiB response 1.5 CPU s/GiB at 680 MiB/s, these
    // 1.0 at 990 MiB/s (docs/performance.md). proxy_buffer_size, which
    // bounds the origin's response header, stays at its default.
    '      proxy_buffers 4 64k;',
    '      proxy_pass_request_headers off;',
    '      proxy_set_header Connection "";',
    `      proxy_set_header Host ${quote(origin.hostHeader ?? url.host)};`,
    ...(auth === undefined ? [] : [`      proxy_set_header Authorization ${quote(`Basic ${auth}`)};`]),
    '      proxy_set_header Accept-Encoding identity;',
    '      proxy_set_header User-Agent $http_user_agent;',
    '      proxy_set_header X-Forwarded-For $sm_forwarded_for;',
    '      proxy_set_header X-Forwarded-Proto $sm_forwarded_proto;',
    ...['Range', 'If-Range', 'If-None-Match', 'If-Modified-Since'].map((h) => `      proxy_set_header ${h} $http_${h.toLowerCase().replaceAll('-', '_')};`),
    '      proxy_intercept_errors on;',
    '      error_page 404 410 = @sm_not_found;',
    '      error_page 504 = @sm_origin_timeout;',
    `      error_page ${failed.join(' ')} = @sm_origin_error;`
  ]
}

/** nginx's time: whole seconds, or milliseconds when there is a fraction. */
function seconds (s: number): string {
  return Number.isInteger(s) ? `${s}s` : `${Math.max(1, Math.round(s * 1000))}ms`
}

/** A named location answering `err` in the JSON shape of docs/errors.md. */
function errorLocation (name: string, err: StreammeterError): string {
  return jsonLocation(name, err.statusCode, quote(JSON.stringify(errorBody(err))))
}

/** A named location answering `status` with the JSON `body` (an nginx string or variable) and `headers`. */
function jsonLocation (name: string, status: number, body: string, headers: readonly string[] = []): string {
  return [
    `    location ${name} {`,
    // No types here: the body is JSON whatever the path's extension says.
    '      types { }',
    '      default_type "application/json; charset=utf-8";',
    ...['Cache-Control no-store', ...headers].map((h) => `      add_header ${h} always;`),
    `      return ${status} ${body};`,
    '    }'
  ].join('\n')
}

/** `types` lines: each content type with its extensions. */
function typeLines (): string[] {
  const byType = new Map<string, string[]>()
  for (const [ext, type] of Object.entries(contentTypes())) byType.set(type, [...(byType.get(type) ?? []), ext])
  return [...byType].map(([type, exts]) => `${quote(type)} ${exts.join(' ')};`)
}

/**
 * An nginx string in single quotes. nginx has no escape for `$` (it would be
 * read as a variable), so a value holding one is refused, as are quotes,
 * backslashes and line breaks.
 */
function quote (value: string): string {
  if (/[$'\\\n\r]/.test(value)) throw new TypeError(`cannot write ${JSON.stringify(value)} into the nginx configuration`)
  return `'${value}'`
}
