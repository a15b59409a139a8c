import { quote } from './nginx-syntax.ts'
import { parseIpBlock } from '../../ip-address.ts'

/** The nginx engine's maps and zones that classify a request before any njs runs (nginx-config.ts uses them). */

/**
 * What nginx decides itself, before any njs runs (a regular expression in
 * nginx costs a fraction of an njs call, docs/performance.md):
 *
 * - `$sm_plain_path`: `1` for a path the node engine's rules plainly allow
 *   (request-path.ts: segments of unreserved characters, none empty or
 *   starting with `.`, at most 2,048 bytes), which decoding and encoding
 *   leave as it is; `$sm_path` is `ok` for it, njs's verdict
 *   (`$sm_path_checked`) for any other.
 * - `$sm_signed_message`: for a query exactly as the signer writes a plain
 *   token, `uid=U&expires=E&token=T`, optionally `&sid=S`, each value of
 *   unreserved characters (nothing to decode, so URLSearchParams reads the
 *   same values): the message its token signs, `U:P:E` with `P` the decoded
 *   path; the parts are `$sm_q_uid`, `$sm_q_expires`, `$sm_q_token` and
 *   `$sm_q_sid`. A uid of at most 128 characters, `E` of at most 15 digits
 *   and `T` in either spelling pass every rule njs checks before the HMAC.
 *   Empty for any other query, and without a secret: njs reads those whole.
 * - `$sm_uid` and `$sm_sid`: the access log's uid (empty unless allowed) and
 *   session parameter, from those parts or from njs.
 */
export function fastPathMaps (signed: boolean, viaApp = false): string[] {
  const segment = '[A-Za-z0-9_~-][A-Za-z0-9_.~-]*'
  const value = '[A-Za-z0-9_.~-]'
  const token = '[0-9a-f]{64}|[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]'
  const query = `^uid=(?<sm_q_uid>${value}{1,128})&expires=(?<sm_q_expires>[0-9]{1,15})&token=(?<sm_q_token>${token})(?:&sid=(?<sm_q_sid>${value}*))?$`
  return [
    `  map $request_uri $sm_plain_path { "~^(?=/[^?]{1,2048}(?:\\?|$))/${segment}(?:/${segment})*(?:\\?|$)" 1; default ""; }`,
    '  map $sm_plain_path $sm_path { 1 ok; default $sm_path_checked; }',
    '  map $uri $sm_relative_path { "~(?s)^/(?<sm_relative>.*)$" $sm_relative; default ""; }',
    `  map $args $sm_signed_message { "~${query}" ${signed ? '"$sm_q_uid:$sm_relative_path:$sm_q_expires"' : '""'}; default ""; }`,
    '  map $sm_signed_message $sm_allowed_uid { "" $sm_uid_checked; default $sm_q_uid; }',
    `  map $sm_access $sm_uid { ok $sm_allowed_uid; default ${viaApp ? '$sm_app_uid' : '""'}; }`,
    '  map $arg_sid $sm_sid_any { "" ""; default $sm_sid_checked; }',
    '  map $sm_signed_message $sm_sid { "" $sm_sid_any; default $sm_q_sid; }'
  ]
}

/**
 * `$sm_via_app`: `1` for a request njs did not let in that a session or a
 * grant may (docs/access.md#sessions): streammeter answers it itself. A
 * request refused by its signed URL goes there when it carries a session
 * (`session_id_fileserver`, `X-Session-ID`), or always when grants can
 * exist (`grants`, with `ACCESS_API_KEY`: the client's network may hold
 * one); an open file only with a session, to meter it to the session's
 * uid. `$sm_app_uid` is the uid streammeter answered it under, for the log.
 */
export function viaAppLines (grants: boolean): string[] {
  const refused = '(?:bad|expired|ip-mismatch)'
  return [
    '  map "$sm_access|$cookie_session_id_fileserver$http_x_session_id" $sm_via_app {',
    ...(grants ? [`    "~^${refused}\\|" 1;`] : [`    "~^${refused}\\|." 1;`]),
    '    "~^open\\|." 1;',
    '    default "";',
    '  }',
    '  js_set $sm_app_uid sm.appUid;'
  ]
}

/**
 * The client IP, as the node engine resolves it (`TRUSTED_PROXIES`,
 * client-ip.ts): nginx's realip module makes `$remote_addr` the rightmost
 * address of `X-Forwarded-For` that is no trusted proxy when the peer is
 * one; `$realip_remote_addr` stays the socket peer, which the access log
 * and streammeter get (the reader resolves the client itself, with the
 * node engine's code). `MAX_TRANSFERS_PER_IP` counts requests in flight per
 * client IP in a zone of 10 MiB (about 80,000 addresses at once; past it,
 * a new address gets the 429 too).
 */
export function clientIpLines (trusted: readonly string[]): string[] {
  return [
    ...(trusted.length === 0
      ? []
      : [...trusted.map((cidr) => `  set_real_ip_from ${cidr};`), '  real_ip_header X-Forwarded-For;', '  real_ip_recursive on;']),
    '  limit_conn_zone $binary_remote_addr zone=sm_per_ip:10m;',
    '  limit_conn_status 429;',
    // A refusal is a 429 and a line of the access log, not one in the error log too.
    '  limit_conn_log_level info;'
  ]
}

/**
 * `$sm_access`, the verdict on a media request (njs, nginx/streammeter.js).
 * With `ACCESS_ALLOW_CIDRS`, a `geo` block marks a client IP (`$remote_addr`,
 * which realip made the client's by `TRUSTED_PROXIES`) of an allowed network,
 * and such a request gets njs's check without a signature (only the uid's
 * length); any other the signed-URL check, whose fast path then does not
 * read the mark.
 */
export function accessLines (allowedNetworks: readonly string[]): string[] {
  if (allowedNetworks.length === 0) return ['  js_set $sm_access sm.access;']
  const blocks = allowedNetworks.map((entry) => {
    const block = parseIpBlock(entry)
    if (block === undefined) throw new Error(`ACCESS_ALLOW_CIDRS: "${entry}" is not an IP address or CIDR block`)
    return block.prefix === undefined ? block.address : `${block.address}/${block.prefix}`
  })
  return [
    `  geo $sm_allowed_net { default 0; ${blocks.map((b) => `${b} 1;`).join(' ')} }`,
    '  js_set $sm_access_signed sm.access;',
    '  js_set $sm_access_open sm.openAccess;',
    '  map $sm_allowed_net $sm_access { 1 $sm_access_open; default $sm_access_signed; }'
  ]
}

/**
 * `$sm_open_ext`: `1` for a path (`$uri`, decoded) whose extension is one of
 * `ACCESS_OPEN_EXTENSIONS` (any case). njs reads it only for a request no
 * other mode let in; without the setting it is not defined at all.
 */
export function openExtensionLines (extensions: readonly string[]): string[] {
  if (extensions.length === 0) return []
  for (const e of extensions) if (!/^[a-z0-9]{1,16}$/.test(e)) throw new Error(`ACCESS_OPEN_EXTENSIONS: "${e}" is not a file extension`)
  return [`  map $uri $sm_open_ext { "~*\\.(?:${extensions.join('|')})$" 1; default ""; }`]
}

/** As media/cors.ts sends them. */
const CORS_EXPOSE = 'Content-Length, Content-Range, Accept-Ranges, X-Session-ID'

/**
 * `$sm_cors_origin` (the allowed origin to answer with, or empty),
 * `$sm_cors_expose` and `$sm_cors_vary` (`Origin` unless every origin is
 * allowed) from `CORS_ORIGINS`, compared without regard to case.
 */
export function corsMaps (origins: readonly string[]): string[] {
  const any = origins.includes('*')
  return [
    '  map $http_origin $sm_cors_origin {',
    `    default ${any ? '*' : '""'};`,
    ...(any ? [] : origins.map((o) => `    "~*^${corsPattern(o)}$" $http_origin;`)),
    '  }',
    `  map $sm_cors_origin $sm_cors_expose { "" ""; default ${quote(CORS_EXPOSE)}; }`,
    `  map $host $sm_cors_vary { default ${any ? '""' : 'Origin'}; }`
  ]
}

/** An origin (`scheme://host[:port]`, as the configuration accepts it) as a regular expression matching it exactly. */
function corsPattern (origin: string): string {
  if (!/^[A-Za-z0-9.:/[\]-]+$/.test(origin)) throw new TypeError(`cannot write the origin ${JSON.stringify(origin)} into the nginx configuration`)
  return origin.replace(/[.[\]]/g, (c) => `\\${c}`)
}
