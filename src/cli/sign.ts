import { ConfigError } from '../errors.ts'
import { readSetting } from '../config/index.ts'
import type { Env } from '../config/index.ts'
import { normalizeIp } from '../ip-address.ts'
import { encodeBinding, encodeScope, inScope, ipBinding, isScope, signScopedToken, signedQuery } from '../server/access/url-signer.ts'
import { parseFlags, wantsHelp } from './args.ts'
import type { CliContext } from './context.ts'

/** What {@link signedPath} signs. */
export interface SignedPathOptions {
  secret: string
  uid: string
  /** The path as on the origin, not URL-encoded, with or without its leading `/`; may be omitted with `scope`. */
  path?: string | undefined
  /** Unix seconds. */
  expires: number
  /**
   * A directory (`/videos/t1/`): the token is then valid for every path
   * under it rather than for `path` alone (docs/access.md).
   */
  scope?: string | undefined
  /** A client address or CIDR block: the URL then works from there only (docs/access.md). */
  ip?: string | undefined
}

/** Seconds a signed URL stays valid unless `--ttl` says otherwise. */
export const DEFAULT_TTL = 3600 // seconds (1 hour)

export const SIGN_HELP = `Usage: streammeter sign --uid U --path /p [--ip CIDR] [--ttl ${DEFAULT_TTL}] [--secret S]
       streammeter sign --uid U --scope /dir/ [--path /dir/p] [--ip CIDR] [--ttl ${DEFAULT_TTL}] [--secret S]

Prints a signed URL path and query for the proxy:
  /p?uid=U&expires=E&token=T
T = HMAC-SHA256(secret, "U:P:E") in lowercase hex, P = the path without its
leading "/", E = now + ttl in unix seconds.

With --scope, one token opens every path under the directory:
  /dir/p?uid=U&expires=E&scope=/dir/&token=T
(the same query works after any path under /dir/; without --path only the
query is printed). T signs uid, scope and expires: docs/access.md.

With --ip, the URL works only for a client in that address or block:
  /p?uid=U&expires=E&ip=203.0.113.0/24&token=T

Flags:
  --uid U        user the bytes are billed to (no ":", no control character)
  --path /p      file path as on the origin, NOT URL-encoded ("/a b.mp4");
                 each segment is percent-encoded in the output
  --scope /dir/  a directory (leading and trailing "/"; "/" for everything):
                 sign for every path under it
  --ip CIDR      an IPv4 or IPv6 address or block (203.0.113.7,
                 2001:db8::/32): only clients there may use the URL
  --ttl SECONDS  validity, a positive integer [default: ${DEFAULT_TTL}]
  --secret S     signing secret [default: SIGNING_SECRET from the environment
                 or .env]; prefer the variable: flags show in the process list
  -h, --help     this help

Exit status: 0 printed, 2 bad usage or no secret.
`

const SPEC = {
  uid: { type: 'string' },
  path: { type: 'string' },
  scope: { type: 'string' },
  ip: { type: 'string' },
  ttl: { type: 'string' },
  secret: { type: 'string' },
  help: { type: 'boolean', short: 'h' }
} as const

/**
 * The signed path and query for `options`: each path segment
 * percent-encoded, then `?uid=…&expires=…&token=…` (with `scope`:
 * `?uid=…&expires=…&scope=…&token=…`, and only the query when there is no
 * path). The token is the server's own signer's (`signToken`, or
 * `signScopedToken` with no path bound), so what the server checks and what
 * this prints cannot drift apart.
 * @throws {ConfigError} naming the flag for a uid, path or scope no request could carry
 */
export function signedPath (options: SignedPathOptions): string {
  const { secret, uid, expires, scope } = options
  const ip = options.ip === undefined ? undefined : canonicalBinding(options.ip)
  if (uid.includes(':')) throw new ConfigError('--uid', 'must not contain ":" (it separates the signed fields)')
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(uid)) throw new ConfigError('--uid', 'must not contain a control character')
  if (scope !== undefined && !isScope(scope)) {
    throw new ConfigError('--scope', 'must be a directory such as /videos/t1/ (leading and trailing "/", no empty, "." or ".." segments)')
  }
  if (options.path === undefined) {
    if (scope === undefined) throw new ConfigError('--path', 'is required; see streammeter sign --help')
    return `?${scopedQuery(secret, uid, scope, expires, ip)}`
  }
  const path = options.path.startsWith('/') ? options.path.slice(1) : options.path
  const segments = path.split('/')
  // The server refuses these paths (and clients normalise dot segments
  // away, changing what was signed), so a URL for one would never work.
  if (path === '' || segments.some((s) => s === '' || s === '.' || s === '..') || /[\0\\]/.test(path)) {
    throw new ConfigError('--path', 'must be a file path such as /videos/a.m3u8 (no empty, "." or ".." segments, no backslash or NUL)')
  }
  const encoded = `/${segments.map(encodeURIComponent).join('/')}`
  if (scope !== undefined) {
    if (!inScope(path, scope)) throw new ConfigError('--path', `must lie under --scope ${scope}`)
    return `${encoded}?${scopedQuery(secret, uid, scope, expires, ip)}`
  }
  return `${encoded}?${signedQuery({ secret, uid, path, expires, ip })}`
}

/** The query of a token valid for every path under `scope` (from `ip` only, when given). */
function scopedQuery (secret: string, uid: string, scope: string, expires: number, ip: string | undefined): string {
  const token = signScopedToken(secret, uid, scope, expires, undefined, ip)
  const bound = ip === undefined ? '' : `&ip=${encodeBinding(ip)}`
  return `uid=${encodeURIComponent(uid)}&expires=${expires}&scope=${encodeScope(scope)}${bound}&token=${token}`
}

/** `--ip` in one spelling: the address as {@link normalizeIp} writes it, and the prefix length when given. */
function canonicalBinding (text: string): string {
  const trimmed = text.trim()
  const block = ipBinding(trimmed)
  if (block === undefined) {
    throw new ConfigError('--ip', 'must be an IPv4 or IPv6 address or CIDR block such as 203.0.113.0/24 or 2001:db8::/32 (not an IPv4-mapped one)')
  }
  // Not IPv4-mapped (ipBinding refuses those), so the block keeps the address's family and prefix.
  const address = normalizeIp(trimmed.split('/')[0] as string) as string
  return block.prefix === undefined ? address : `${address}/${block.prefix}`
}

/** `streammeter sign`: prints one signed path. @throws {ConfigError} for bad usage (exit 2) */
export function runSign (argv: readonly string[], env: Env, ctx: CliContext): number {
  if (wantsHelp(argv)) {
    ctx.stdout.write(SIGN_HELP)
    return 0
  }
  const flags = parseFlags('sign', argv, SPEC)
  if (flags.uid === undefined) throw new ConfigError('--uid', 'is required; see streammeter sign --help')
  if (flags.path === undefined && flags.scope === undefined) throw new ConfigError('--path', 'is required; see streammeter sign --help')
  let ttl = DEFAULT_TTL
  if (flags.ttl !== undefined) {
    ttl = /^\d+$/.test(flags.ttl) ? Number(flags.ttl) : NaN
    if (!Number.isSafeInteger(ttl) || ttl < 1) throw new ConfigError('--ttl', `must be a positive whole number of seconds, got ${JSON.stringify(flags.ttl)}`)
  }
  const secret = flags.secret ?? readSetting('SIGNING_SECRET', { env, cwd: ctx.cwd })
  if (secret === undefined) {
    throw new ConfigError('SIGNING_SECRET', 'is not set: pass --secret or set SIGNING_SECRET (in the environment or .env)')
  }
  // The server refuses a secret with whitespace (docs/limits.md#settings): a URL signed
  // with one could never verify there.
  // eslint-disable-next-line no-control-regex
  if (/[\s\u0000-\u001f\u007f]/.test(secret)) {
    throw new ConfigError(flags.secret !== undefined ? '--secret' : 'SIGNING_SECRET', 'must be a single token, without spaces, other whitespace or control characters')
  }
  const expires = Math.floor(ctx.now() / 1000) + ttl
  ctx.stdout.write(signedPath({ secret, uid: flags.uid, path: flags.path, expires, scope: flags.scope, ip: flags.ip }) + '\n')
  return 0
}
