import { DEFAULT_CONTENT_TYPE, contentTypes } from '../origin/media-types.ts'
import { OWN_PARAMETERS } from '../origin/origin-query.ts'
import { quote, seconds } from './nginx-syntax.ts'

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

/** The keep-alive upstream of an HTTP origin, and what the media location sends it. */
export function originHttpLines (origin: NginxHttpOrigin): string[] {
  const url = new URL(origin.url)
  const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port)
  const basePath = url.pathname.endsWith('/') ? url.pathname : url.pathname + '/'
  const trusted = origin.trustedProxies
  return [
    // The origin's Cache-Control is replaced by ours; only its no-store is
    // kept (origin-response-headers.ts). nginx 1.22 reads the first of
    // several Cache-Control lines only; the node engine reads them all.
    '  map $upstream_http_cache_control $sm_origin_cache_control {',
    '    default $sm_cache_control;',
    '    ~*(^|,)\\s*no-store\\s*(,|$) \'private, no-store\';',
    '  }',
    // `hostname` keeps an IPv6 address's brackets.
    `  upstream sm_origin { server ${url.hostname}:${port}; keepalive ${Math.min(1024, origin.connections)}; keepalive_timeout 60s; }`,
    `  js_var $sm_origin_path_hex ${Buffer.from(basePath).toString('hex')};`,
    `  js_var $sm_origin_query_hex ${url.search.length > 1 ? Buffer.from(url.search.slice(1)).toString('hex') : '""'};`,
    '  js_set $sm_origin_uri_checked sm.originUri;',
    ...originUriMaps(basePath, url.search.length > 1 ? url.search : ''),
    // The origin's Content-Type, else the node engine's by extension; none on a 304.
    '  map $uri $sm_ext_type {',
    `    default ${quote(DEFAULT_CONTENT_TYPE)};`,
    ...Object.entries(contentTypes()).map(([ext, type]) => `    "~*\\.${ext.replace(/[^A-Za-z0-9]/g, '')}$" ${quote(type)};`),
    '  }',
    '  map "$status:$upstream_http_content_type" $sm_origin_type {',
    '    "~^304:" "";',
    '    "~^[0-9]+:$" $sm_ext_type;',
    '    "~^[0-9]+:(?<type>.+)$" $type;',
    '  }',
    // A trusted proxy's X-Forwarded-For is passed on with the peer
    // appended; anyone else's is replaced by the peer (forwarding.ts).
    '  geo $realip_remote_addr $sm_trusted_peer {',
    '    default 0;',
    ...trusted.map((cidr) => `    ${cidr} 1;`),
    '  }',
    // `$proxy_add_x_forwarded_for` would append realip's client, not the peer.
    '  map $http_x_forwarded_for $sm_peer_appended { "" $realip_remote_addr; default "$http_x_forwarded_for, $realip_remote_addr"; }',
    '  map $sm_trusted_peer $sm_forwarded_for { 1 $sm_peer_appended; default $realip_remote_addr; }',
    '  map $sm_trusted_peer $sm_forwarded_proto { 1 $http_x_forwarded_proto; default http; }',
    `  proxy_connect_timeout ${seconds(origin.timeout)};`,
    `  proxy_read_timeout ${seconds(origin.timeout)};`,
    ...(url.protocol === 'https:'
      ? ['  proxy_ssl_server_name on;', `  proxy_ssl_name ${quote(url.hostname)};`, '  proxy_ssl_verify on;',
          "  proxy_ssl_trusted_certificate '/etc/ssl/certs/ca-certificates.crt';"]
      : [])
  ]
}

/** The CORS response fields of the Fetch standard, which the node engine drops from an origin's answer (origin-response-headers.ts). */
const ORIGIN_CORS_FIELDS = ['Allow-Origin', 'Allow-Credentials', 'Allow-Methods', 'Allow-Headers', 'Expose-Headers', 'Max-Age', 'Allow-Private-Network']
  .map((f) => `Access-Control-${f}`)

/**
 * `$sm_origin_uri`, the path and query the origin gets (http-origin.ts and
 * origin-query.ts): for a plain path (`$sm_plain_path`, which encoding
 * leaves as it is) and a query of the proxy's own parameters only (all
 * dropped), nginx writes it itself: the base URL's path, the path, the base
 * URL's query. Any other request gets njs's (`$sm_origin_uri_checked`). A
 * base URL that cannot be written into nginx's configuration as it is
 * always takes njs's.
 */
function originUriMaps (basePath: string, baseSearch: string): string[] {
  const own = `(?:${[...OWN_PARAMETERS].join('|')})(?:=[^&]*)?`
  // Written into a double-quoted nginx string, next to a variable.
  if (/[$"'\\\s]/.test(basePath + baseSearch)) return ['  map $sm_plain_path $sm_origin_uri { default $sm_origin_uri_checked; }']
  const plain = `"${basePath}$sm_relative_path${baseSearch}"`
  return [
    `  map $args $sm_own_args_only { "~^(?:${own})?(?:&(?:${own})?)*$" 1; default ""; }`,
    `  map "$sm_plain_path$sm_own_args_only" $sm_origin_uri { 11 ${plain}; default $sm_origin_uri_checked; }`
  ]
}

/**
 * The media location's side of an HTTP origin: streamed from memory buffers
 * (never spilled to a temporary file), identity encoding, the node engine's
 * request headers, and its answers to the origin's errors (a 404 or 410 is
 * a 404; any other failure a 502, a timeout a 504).
 */
export function originProxyLines (origin: NginxHttpOrigin): string[] {
  const url = new URL(origin.url)
  const failed: number[] = []
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
    // Not passed on, as from the node engine (origin-response-headers.ts):
    // the caching fields streammeter decides, and the origin's cookies.
    ...['Cache-Control', 'CDN-Cache-Control', 'Surrogate-Control', 'Set-Cookie'].map((h) => `      proxy_hide_header ${h};`),
    // CORS is streammeter's (CORS_ORIGINS), never the origin's: an origin's
    // Access-Control-Allow-Origin would reach a page CORS_ORIGINS refuses.
    // nginx hides by name, so these are the fields the Fetch standard defines.
    ...ORIGIN_CORS_FIELDS.map((h) => `      proxy_hide_header ${h};`),
    '      add_header Cache-Control $sm_origin_cache_control;',
    '      proxy_hide_header Content-Type;',
    '      add_header Content-Type $sm_origin_type;',
    '      proxy_intercept_errors on;',
    '      error_page 404 410 = @sm_not_found;',
    '      error_page 504 = @sm_origin_timeout;',
    `      error_page ${failed.join(' ')} = @sm_origin_error;`
  ]
}
