import type { FastifyInstance } from 'fastify'
import { AccessUnavailableError, BadRequestError, StreammeterError } from '../../errors.ts'
import { networkOf, normalizeIp } from '../../ip-address.ts'
import { MAX_USER_AGENT } from '../../store/access-store.ts'
import type { Grant } from '../../store/access-store.ts'
import type { AccessState } from '../access/access-state.ts'
import { MAX_UID_LENGTH } from '../access/authorize.ts'
import { directoryOf } from '../access/url-signer.ts'
import { accessApi } from './access-api.ts'
import { originPath } from './file-check-routes.ts'

/** `SESSION_TTL`, `GRANT_TTL` (seconds) and the grant limits. */
export interface SessionSettings {
  sessionTtl: number
  grantTtl: number
  grantMaxPerUid: number
  grantMaxPathsPerNetwork: number
}

export const DEFAULT_SESSION_SETTINGS: Readonly<SessionSettings> = Object.freeze({
  sessionTtl: 7200, grantTtl: 3600, grantMaxPerUid: 5, grantMaxPathsPerNetwork: 3
})

/** What the grant endpoints use. */
export interface WhitelistContext {
  /** `ACCESS_API_KEY`; without it the endpoints answer 403. */
  apiKey: string | undefined
  /** Undefined only without a key (nothing can be granted then). */
  state: AccessState | undefined
  settings: Readonly<SessionSettings>
  /** ms since the epoch. */
  now: () => number
}

/** Longest User-Agent accepted. */
const MAX_AGENT_IN = 8192
const BODY_LIMIT = 16 * 1024
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/

/**
 * The Python proxy's grants (docs/access.md#grants), behind `ACCESS_API_KEY`:
 * `POST /api/whitelist {uid, path, clientIp, UserAgent}` grants the uid the
 * directory of `path` from `clientIp`'s network with that User-Agent for
 * `GRANT_TTL`; `GET /api/whitelist?uid=` lists them; `DELETE
 * /api/whitelist?uid=` revokes them and the uid's sessions on every instance.
 */
export function registerWhitelistRoutes (app: FastifyInstance, ctx: WhitelistContext): void {
  const route = accessApi(app, ctx.apiKey)
  const state = (): AccessState | StreammeterError => ctx.state ?? new AccessUnavailableError()

  route('POST', '/api/whitelist', BODY_LIMIT, ({ body }) => {
    const s = state()
    if (s instanceof StreammeterError) return s
    const grant = grantOf(body, ctx)
    if (grant instanceof StreammeterError) return grant
    const { grantMaxPerUid: perUid, grantMaxPathsPerNetwork: pathsPerNetwork } = ctx.settings
    return s.grant(grant, { perUid, pathsPerNetwork }).then((result) => ({
      status: 'ok',
      ...shown(grant),
      ttl: ctx.settings.grantTtl,
      renewed: result.renewed,
      evicted: result.evicted.map(shown)
    }))
  })

  route('GET', '/api/whitelist', 1024, ({ query }) => {
    const s = state()
    const uid = uidOf(query.uid)
    if (s instanceof StreammeterError) return s
    if (uid instanceof StreammeterError) return uid
    return s.grantsOf(uid).then((grants) => ({ uid, count: grants.length, grants: grants.map(shown) }))
  })

  route('DELETE', '/api/whitelist', 1024, ({ query, body }) => {
    const s = state()
    const uid = uidOf(query.uid ?? body.uid)
    if (s instanceof StreammeterError) return s
    if (uid instanceof StreammeterError) return uid
    return s.revoke(uid).then((revoked) => ({ status: 'ok', uid, revoked }))
  })
}

/** The grant a POST body asks for, or why it is refused (400, naming the field). */
function grantOf (body: Record<string, unknown>, ctx: WhitelistContext): Grant | BadRequestError {
  const uid = uidOf(body.uid)
  if (uid instanceof BadRequestError) return uid
  const { path, clientIp, UserAgent: agent } = body
  if (typeof path !== 'string') return new BadRequestError('path: a string is required, e.g. "/videos/t1/master.m3u8"')
  // A directory (`/videos/t1/`) grants itself; a file its directory.
  const origin = originPath(path.endsWith('/') && path.length > 1 ? `${path}_` : path)
  if (origin instanceof BadRequestError) return new BadRequestError(`path: ${origin.message}`)
  if (typeof origin !== 'string') return new BadRequestError('path: a segment starting with "." is never served')
  if (typeof clientIp !== 'string') return new BadRequestError('clientIp: a string is required, e.g. "203.0.113.7"')
  const ip = clientIp.includes('/') ? undefined : normalizeIp(clientIp)
  const network = ip === undefined ? undefined : networkOf(ip)
  if (ip === undefined || network === undefined) return new BadRequestError('clientIp: not an IP address')
  if (typeof agent !== 'string') return new BadRequestError('UserAgent: a string is required (the player\'s User-Agent header)')
  if (agent.length > MAX_AGENT_IN) return new BadRequestError(`UserAgent: longer than ${MAX_AGENT_IN} characters`)
  const now = ctx.now()
  return {
    uid,
    network,
    agent, // hashed by AccessState.grant
    userAgent: agent.slice(0, MAX_USER_AGENT),
    clientIp: ip,
    directory: directoryOf(origin),
    grantedAt: now,
    expiresAt: now + ctx.settings.grantTtl * 1000
  }
}

function uidOf (value: unknown): string | BadRequestError {
  if (typeof value !== 'string' || value === '') return new BadRequestError('uid: a non-empty string is required')
  if (value.length > MAX_UID_LENGTH) return new BadRequestError(`uid: longer than ${MAX_UID_LENGTH} characters`)
  if (CONTROL.test(value)) return new BadRequestError('uid: holds a control character')
  return value
}

/** A grant as the API answers it: no agent hash, times in ISO 8601. */
function shown (g: Grant): Record<string, unknown> {
  return {
    uid: g.uid,
    directory: g.directory,
    network: g.network,
    client_ip: g.clientIp,
    user_agent: g.userAgent,
    granted_at: new Date(g.grantedAt).toISOString(),
    expires_at: new Date(g.expiresAt).toISOString()
  }
}
