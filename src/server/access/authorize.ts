import type { IncomingHttpHeaders } from 'node:http'
import {
  AccessUnavailableError, BadRequestError, BadSignatureError, ConfigError, UrlExpiredError, UseLimitError
} from '../../errors.ts'
import type { StreammeterError } from '../../errors.ts'
import { IpBlockList, networkOf } from '../../ip-address.ts'
import type { Grant } from '../../store/access-store.ts'
import { firstValue } from '../header-value.ts'
import { fileTypeOf } from '../origin/media-types.ts'
import type { AccessState } from './access-state.ts'
import type { DenialReason } from './denials.ts'
import type { ClientIpResolver } from './client-ip.ts'
import { sessionIdOf } from './session-id.ts'
import { presentedSession } from './sessions.ts'
import { checkSignedRequest, directoryOf, inScope } from './url-signer.ts'
import type { SignedRequestCheck } from './url-signer.ts'

/** Longest accepted `uid` (media requests and the grants API alike). */
export const MAX_UID_LENGTH = 256

/** What a media request says about who asks, as any engine sees it. */
export interface AccessRequest {
  /** URL-decoded path without the leading slash, already validated (request-path.ts). */
  path: string
  /** The query string's parameters. */
  query: URLSearchParams
  headers: IncomingHttpHeaders
  /** The socket peer's address. */
  peer: string
  /** The request's method: only a GET counts against a use limit. @default 'GET' */
  method?: string | undefined
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
  /**
   * The session id the request is reported under: what it carries
   * (session-id.ts), as both engines read it; an access session presented
   * in its cookie or header is that.
   */
  sessionId: string | undefined
  /**
   * The access session this request holds (docs/access.md#sessions): the
   * answer sets its cookie. Undefined when sessions are off or the request
   * came in by another way (an allowed network, an open extension).
   */
  session: string | undefined
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
  /**
   * The store's sessions and grants (access-state.ts); undefined: neither
   * (no `SIGNING_SECRET` nor `ACCESS_API_KEY`, so nothing could make them).
   */
  state?: AccessState | undefined
  /** Grants can exist (`ACCESS_API_KEY` is set): look them up for requests nothing else lets in. @default false */
  grants?: boolean | undefined
  /**
   * `KEY_MAX_USES` and `PLAYLIST_MAX_USES`: how often one signed URL (or one
   * session, per path) may fetch a key file or a playlist; needs `state`.
   * @default none
   */
  useLimits?: { key?: number | undefined, playlist?: number | undefined } | undefined
  /** ms since the epoch. */
  now: () => number
}

/**
 * The one access check of a media request (docs/access.md), whichever
 * engine moves its bytes: the access modes in their order (allowed
 * networks, the signed URL with its scope and IP binding, sessions, grants,
 * open extensions), the uid, the session and the client IP. The first two
 * answer at once; the others may ask the store (through a cache), and then
 * the answer is a promise.
 * @throws {ConfigError} naming `ACCESS_ALLOW_CIDRS` for an entry that is no address or block
 */
export class Authorizer {
  readonly #secret: string | undefined
  readonly #locked: boolean
  readonly #allowed: IpBlockList
  readonly #open: ReadonlySet<string>
  readonly #ips: ClientIpResolver
  readonly #state: AccessState | undefined
  readonly #grants: boolean
  readonly #useLimits: { key?: number | undefined, playlist?: number | undefined }
  readonly #now: () => number

  constructor (options: AuthorizerOptions) {
    this.#secret = options.signingSecret
    this.#locked = options.locked === true
    this.#allowed = new IpBlockList(options.allowedNetworks ?? [], (entry) => new ConfigError('ACCESS_ALLOW_CIDRS', `"${entry}" is not an IP address or CIDR block`))
    this.#open = new Set(options.openExtensions ?? [])
    this.#ips = options.ips
    this.#state = options.state
    this.#grants = options.grants === true
    this.#useLimits = options.useLimits ?? {}
    this.#now = options.now
  }

  /** Whether URLs must be signed (`SIGNING_SECRET` is set). */
  get signing (): boolean {
    return this.#secret !== undefined
  }

  /** Check one request: who it is for, or why it is refused. Never throws, never rejects. */
  authorize (request: AccessRequest): Identity | Denial | Promise<Identity | Denial> {
    const { path, query } = request
    const ip = this.#ips.resolve(request.peer, request.headers['x-forwarded-for'])
    const uid = nonEmpty(query.get('uid'))
    if (uid !== undefined && uid.length > MAX_UID_LENGTH) return denied(new BadRequestError(`uid longer than ${MAX_UID_LENGTH} characters`), 'uid_too_long', ip)
    const expiresRaw = nonEmpty(query.get('expires'))
    const label = sessionIdOf(request.headers, nonEmpty(query.get('sid')))
    // An allowed network is let in before any other mode (its uid parameter,
    // if any, believed): a bad or expired token from there is not looked at.
    const secret = this.#secret
    if ((secret === undefined && !this.#locked) || this.#allowed.has(ip)) {
      const expires = expiresRaw !== undefined && /^\d{1,12}$/.test(expiresRaw) ? Number(expiresRaw) : undefined
      return allowed({ uid, expires, sessionId: label, ip })
    }
    // ACCESS_API_KEY without SIGNING_SECRET: no URL can be signed, and the uid alone grants nothing.
    let verdict: SignedRequestCheck = 'bad'
    if (secret !== undefined) {
      const scoped = nonEmpty(query.get('scope'))
      const bound = nonEmpty(query.get('ip'))
      verdict = checkSignedRequest({
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
      if (verdict === 'ok') {
        const scope = scoped ?? directoryOf(path)
        const session = this.#openSession(request, uid as string, ip, scope)
        const who = allowed({ uid, expires: Number(expiresRaw), scope, ipBinding: bound, sessionId: label, session, ip })
        const limit = this.#useLimit(request)
        // One count per signed URL, whichever encoding its token is in: what the token covers.
        if (limit === undefined) return who
        return this.#counted(who, limit, `url\n${uid as string}\n${path}\n${expiresRaw as string}\n${scoped ?? ''}\n${bound ?? ''}`, Number(expiresRaw) * 1000)
      }
    }
    const state = this.#state
    const network = networkOf(ip)
    if (state === undefined || network === undefined) return this.#last(request, verdict, ip, label)
    return this.#fromStore(request, { uid, verdict, ip, label, network, state })
  }

  /** Modes 3 to 5: a session, a grant, an open extension; else the signed URL's verdict. */
  async #fromStore (request: AccessRequest, c: Unsigned): Promise<Identity | Denial> {
    const { path, headers } = request
    const { uid, ip, state, network } = c
    const isOpen = this.#isOpen(path)
    const agent = state.agentOf(firstValue(headers['user-agent']))
    try {
      const presented = presentedSession(headers)
      const session = presented === undefined ? undefined : await state.session(presented)
      // A session matches its network and agent; it lets in its directory, and
      // meters an open file anywhere.
      if (session !== undefined && session.network === network && session.agent === agent && (isOpen || inScope(path, session.directory))) {
        if (uid !== undefined && uid !== session.uid) return denied(new BadSignatureError(), 'uid_mismatch', ip)
        state.slide(session)
        return await this.#perSession(request, allowed({ uid: session.uid, sessionId: c.label, session: session.id, ip }))
      }
      if (this.#grants) {
        const grants = await state.grantsIn(network)
        const now = this.#now()
        const matching = grants.matching(agent, uid, path, now, isOpen)
        if (matching.length > 0) {
          const grant = pickGrant(matching)
          const id = state.open({ uid: grant.uid, network, agent, directory: grant.directory })
          return await this.#perSession(request, allowed({ uid: grant.uid, sessionId: c.label, session: id, ip }))
        }
        // A grant of someone else would let it in: the uid parameter is a forgery.
        if (uid !== undefined && grants.matching(agent, undefined, path, now, isOpen).length > 0) return denied(new BadSignatureError(), 'uid_mismatch', ip)
      }
    } catch (err) {
      // An open file needs no check: served, unmetered, while the store is away.
      if (isOpen) return allowed({ sessionId: c.label, ip })
      return storeDown(err, ip)
    }
    return this.#last(request, c.verdict, ip, c.label)
  }

  /** The use limit `request` counts against, if any: a GET of a key file or a playlist with its limit set. */
  #useLimit (request: AccessRequest): number | undefined {
    if (this.#state === undefined || (request.method ?? 'GET') !== 'GET') return undefined
    const type = fileTypeOf(request.path)
    return type === 'key' ? this.#useLimits.key : type === 'm3u8' ? this.#useLimits.playlist : undefined
  }

  /** A session's or grant's request for a limited file: counted per session and path, for as long as a session lives. */
  async #perSession (request: AccessRequest, who: Identity): Promise<Identity | Denial> {
    const limit = this.#useLimit(request)
    const state = this.#state as AccessState
    if (limit === undefined) return who
    return await this.#counted(who, limit, `session\n${who.session as string}\n${request.path}`, this.#now() + state.sessionTtl * 1000)
  }

  /**
   * `who`, once one more use of `key` is within `limit`; past it a denial
   * (`use_limit`), and a store that does not answer fails closed.
   */
  async #counted (who: Identity, limit: number, key: string, until: number): Promise<Identity | Denial> {
    try {
      const uses = await (this.#state as AccessState).countUse(key, until)
      return uses <= limit ? who : denied(new UseLimitError(limit), 'use_limit', who.ip)
    } catch (err) {
      return storeDown(err, who.ip)
    }
  }

  /** The session a signed request opens (docs/access.md#sessions): its id, or undefined when sessions are off. */
  #openSession (request: AccessRequest, uid: string, ip: string, directory: string): string | undefined {
    const state = this.#state
    const network = state === undefined ? undefined : networkOf(ip)
    if (state === undefined || network === undefined) return undefined
    return state.open({ uid, network, agent: state.agentOf(firstValue(request.headers['user-agent'])), directory })
  }

  /** When nothing with a uid let the request in: an open extension serves it unmetered; else the signed URL's verdict. */
  #last (request: AccessRequest, verdict: SignedRequestCheck, ip: string, label: string | undefined): Identity | Denial {
    if (this.#isOpen(request.path)) return allowed({ sessionId: label, ip })
    if (verdict === 'ip-mismatch') return denied(new BadSignatureError(), 'ip_mismatch', ip)
    if (verdict === 'expired') return denied(new UrlExpiredError(), 'expired', ip)
    return denied(new BadSignatureError(), 'bad_signature', ip)
  }

  /** Whether `path`'s extension (of its last segment, any case) is an open one. */
  #isOpen (path: string): boolean {
    if (this.#open.size === 0) return false
    const name = path.slice(path.lastIndexOf('/') + 1)
    const dot = name.lastIndexOf('.')
    return dot !== -1 && this.#open.has(name.slice(dot + 1).toLowerCase())
  }
}

/** What {@link Authorizer} knows of a request no signed URL let in. */
interface Unsigned {
  uid: string | undefined
  verdict: SignedRequestCheck
  ip: string
  label: string | undefined
  network: string
  state: AccessState
}

/** An allowed request; what is not given is undefined. */
function allowed (who: Partial<Omit<Identity, 'kind' | 'ip'>> & { ip: string }): Identity {
  return {
    kind: 'allowed',
    uid: who.uid,
    expires: who.expires,
    scope: who.scope,
    ipBinding: who.ipBinding,
    sessionId: who.sessionId,
    session: who.session,
    ip: who.ip
  }
}

/** Of the grants matching a request, the one it is metered under: the deepest directory, the newest on a tie. */
function pickGrant (grants: readonly Grant[]): Grant {
  let best = grants[0] as Grant
  for (const g of grants) {
    if (g.directory.length > best.directory.length || (g.directory.length === best.directory.length && g.grantedAt >= best.grantedAt)) best = g
  }
  return best
}

/** A request the store had to decide and could not: 503, never let through. */
function storeDown (err: unknown, ip: string): Denial {
  return denied(err instanceof AccessUnavailableError ? err : new AccessUnavailableError({ cause: err }), 'store_unavailable', ip)
}

function denied (error: StreammeterError, reason: DenialReason, ip: string): Denial {
  return { kind: 'denied', error, reason, ip }
}

function nonEmpty (v: string | null): string | undefined {
  return v === null || v === '' ? undefined : v
}
