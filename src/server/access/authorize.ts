import type { IncomingHttpHeaders } from 'node:http'
import { BadRequestError, BadSignatureError, ConfigError, UrlExpiredError } from '../../errors.ts'
import type { StreammeterError } from '../../errors.ts'
import { IpBlockList } from '../../ip-address.ts'
import type { DenialReason } from './denials.ts'
import type { ClientIpResolver } from './client-ip.ts'
import { sessionIdOf } from './session-id.ts'
import { checkSignedRequest, directoryOf } from './url-signer.ts'

/** Longest accepted `uid`. */
const MAX_UID_LENGTH = 256

/** What a media request says about who asks, as any engine sees it. */
export interface AccessRequest {
  /** URL-decoded path without the leading slash, already validated (request-path.ts). */
  path: string
  /** The query string's parameters. */
  query: URLSearchParams
  headers: IncomingHttpHeaders
  /** The socket peer's address. */
  peer: string
}

/** Who asks, once the request checked out. */
export interface Identity {
  kind: 'allowed'
  /** The uid the bytes are metered under; undefined when the request names none (not metered). */
  uid: string | undefined
  /** Unix seconds the signed URL stops working (or an unsigned `expires`), else undefined. */
  expires: number | undefined
  /**
   * The directory (`/t/`) under which rewriting this request's playlist may
   * sign children: the `scope` its token was signed for, else the directory
   * of the signed path itself; undefined when nothing is signed.
   */
  scope: string | undefined
  /**
   * The client address or block the signed URL was bound to (its `ip`
   * parameter, verified): tokens minted for this request's playlist
   * children are bound to it too. Undefined when not bound.
   */
  ipBinding: string | undefined
  sessionId: string | undefined
  /** The client's IP (`TRUSTED_PROXIES` applied to `X-Forwarded-For`). */
  ip: string
}

/** Why a request is refused: the error its client gets, and the reason counted (denials.ts). */
export interface Denial {
  kind: 'denied'
  error: StreammeterError
  reason: DenialReason
  /** The client's IP, as {@link Identity.ip}. */
  ip: string
}

/** Options of {@link Authorizer}. */
export interface AuthorizerOptions {
  /** `SIGNING_SECRET`; without it the `uid` parameter is trusted as-is. */
  signingSecret: string | undefined
  /**
   * `ACCESS_API_KEY` is set: even without a secret, the `uid` parameter
   * alone grants nothing (docs/access.md#who-gets-in-the-access-modes). @default false
   */
  locked?: boolean | undefined
  /**
   * `ACCESS_ALLOW_CIDRS`: client networks (addresses, CIDR blocks) let in
   * before any other check, under their `uid` parameter. @default []
   */
  allowedNetworks?: Iterable<string> | undefined
  /**
   * `ACCESS_OPEN_EXTENSIONS`, lower-case without the dot: a request for such
   * a file that no other mode lets in is served, not metered. @default []
   */
  openExtensions?: Iterable<string> | undefined
  ips: ClientIpResolver
  /** ms since the epoch. */
  now: () => number
}

/**
 * The one access check of a media request (docs/access.md), whichever
 * engine moves its bytes: the access modes in their order (allowed
 * networks, the signed URL with its scope and IP binding, open extensions),
 * the uid, the session and the client IP. Sessions and grants will be
 * further steps here, between the signed URL and open extensions.
 * @throws {ConfigError} naming `ACCESS_ALLOW_CIDRS` for an entry that is no address or block
 */
export class Authorizer {
  readonly #secret: string | undefined
  readonly #locked: boolean
  readonly #allowed: IpBlockList
  readonly #open: ReadonlySet<string>
  readonly #ips: ClientIpResolver
  readonly #now: () => number

  constructor (options: AuthorizerOptions) {
    this.#secret = options.signingSecret
    this.#locked = options.locked === true
    this.#allowed = new IpBlockList(options.allowedNetworks ?? [], (entry) => new ConfigError('ACCESS_ALLOW_CIDRS', `"${entry}" is not an IP address or CIDR block`))
    this.#open = new Set(options.openExtensions ?? [])
    this.#ips = options.ips
    this.#now = options.now
  }

  /** Whether URLs must be signed (`SIGNING_SECRET` is set). */
  get signing (): boolean {
    return this.#secret !== undefined
  }

  /** Check one request: who it is for, or why it is refused. Never throws. */
  authorize (request: AccessRequest): Identity | Denial {
    const { path, query } = request
    const ip = this.#ips.resolve(request.peer, request.headers['x-forwarded-for'])
    const uid = nonEmpty(query.get('uid'))
    if (uid !== undefined && uid.length > MAX_UID_LENGTH) return denied(new BadRequestError(`uid longer than ${MAX_UID_LENGTH} characters`), 'uid_too_long', ip)
    const expiresRaw = nonEmpty(query.get('expires'))
    // An allowed network is let in before any other mode (its uid parameter,
    // if any, believed): a bad or expired token from there is not looked at.
    const secret = this.#secret
    const trusted = (secret === undefined && !this.#locked) || this.#allowed.has(ip)
    let expires: number | undefined
    let scope: string | undefined
    let ipBinding: string | undefined
    if (!trusted) {
      // ACCESS_API_KEY without SIGNING_SECRET: no URL can be signed, and the uid alone grants nothing.
      if (secret === undefined) return this.#open.size > 0 && this.#isOpen(path) ? open(request, ip) : denied(new BadSignatureError(), 'bad_signature', ip)
      const scoped = nonEmpty(query.get('scope'))
      const bound = nonEmpty(query.get('ip'))
      const verdict = checkSignedRequest({
        secret,
        uid,
        path,
        expires: expiresRaw,
        token: nonEmpty(query.get('token')),
        scope: scoped,
        ip: bound,
        clientIp: ip,
        now: Math.floor(this.#now() / 1000)
      })
      // The last mode: an open extension is served whatever the token said, unmetered.
      if (verdict !== 'ok' && this.#open.size > 0 && this.#isOpen(path)) return open(request, ip)
      if (verdict === 'bad') return denied(new BadSignatureError(), 'bad_signature', ip)
      if (verdict === 'ip-mismatch') return denied(new BadSignatureError(), 'ip_mismatch', ip)
      if (verdict === 'expired') return denied(new UrlExpiredError(), 'expired', ip)
      expires = Number(expiresRaw)
      scope = scoped ?? directoryOf(path)
      ipBinding = bound
    } else if (expiresRaw !== undefined && /^\d{1,12}$/.test(expiresRaw)) {
      expires = Number(expiresRaw)
    }
    return {
      kind: 'allowed',
      uid,
      expires,
      scope,
      ipBinding,
      sessionId: sessionIdOf(request.headers, nonEmpty(query.get('sid'))),
      ip
    }
  }

  /** Whether `path`'s extension (of its last segment, any case) is an open one. */
  #isOpen (path: string): boolean {
    const name = path.slice(path.lastIndexOf('/') + 1)
    const dot = name.lastIndexOf('.')
    return dot !== -1 && this.#open.has(name.slice(dot + 1).toLowerCase())
  }
}

/** A request let in by its open extension: no uid (not metered), nothing signed for it. */
function open (request: AccessRequest, ip: string): Identity {
  return { kind: 'allowed', uid: undefined, expires: undefined, scope: undefined, ipBinding: undefined, sessionId: sessionIdOf(request.headers, nonEmpty(request.query.get('sid'))), ip }
}

function denied (error: StreammeterError, reason: DenialReason, ip: string): Denial {
  return { kind: 'denied', error, reason, ip }
}

function nonEmpty (v: string | null): string | undefined {
  return v === null || v === '' ? undefined : v
}
