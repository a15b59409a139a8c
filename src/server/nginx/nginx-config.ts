import { BadRequestError, BadSignatureError, NotFoundError, UrlExpiredError, errorBody } from '../../errors.ts'
import type { StreammeterError } from '../../errors.ts'
import { DEFAULT_CONTENT_TYPE, contentTypes } from '../origin/media-types.ts'

/** Where Debian's libnginx-mod-http-js puts the module. */
export const NJS_MODULE_PATH = '/usr/lib/nginx/modules/ngx_http_js_module.so'

/** What the nginx engine's configuration is rendered from. */
export interface NginxConfigOptions {
  /** Address and port nginx listens on for clients (`HOST`, `PORT`). */
  host: string
  port: number
  /** `ORIGIN_ROOT`: the directory nginx serves files from. */
  root: string
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
  const denials: Array<[string, number, StreammeterError]> = [
    ['bad', 460, new BadSignatureError()],
    ['expired', 461, new UrlExpiredError()],
    ['long-uid', 462, new BadRequestError('uid longer than 256 characters')]
  ]
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
    `  js_import sm from ${quote(o.njsPath)};`,
    '  js_set $sm_access sm.access;',
    '  js_set $sm_uid sm.uid;',
    '  js_set $sm_sid sm.sid;',
    '  js_set $sm_method_error sm.methodError;',
    // Hex: nginx would read a `$` in the secret as a variable.
    `  js_var $sm_secret_hex ${secret === '' ? '""' : secret};`,
    `  log_format streammeter escape=json '${ACCESS_LOG_FORMAT}';`,
    `  access_log ${quote(o.accessLog)} streammeter;`,
    '  server {',
    `    listen ${o.host.includes(':') ? `[${o.host}]` : o.host}:${o.port};`,
    `    root ${quote(o.root)};`,
    '    location / {',
    '      if ($request_method !~ ^(GET|HEAD)$) { return 463; }',
    ...denials.map(([verdict, code]) => `      if ($sm_access = ${verdict}) { return ${code}; }`),
    // Files only: a directory is a 404, as in the node engine (no redirect, no listing).
    '      try_files $uri =404;',
    '    }',
    // A segment starting with `.` is a 404, as in the node engine (docs/limits.md).
    '    location ~ /\\. { return 404; }',
    ...denials.map(([verdict, code]) => `    error_page ${code} = @sm_${verdict};`),
    '    error_page 404 = @sm_not_found;',
    '    error_page 463 = @sm_method;',
    ...denials.map(([verdict,, err]) => errorLocation(`@sm_${verdict}`, err)),
    errorLocation('@sm_not_found', new NotFoundError()),
    // The body names the method, as the node engine's does (njs renders it).
    jsonLocation('@sm_method', 405, '$sm_method_error', ['Allow "GET, HEAD, OPTIONS"']),
    '  }',
    '}',
    ''
  ]
  return lines.join('\n')
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
