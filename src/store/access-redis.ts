import type { ChainableCommander, Cluster, Redis } from 'ioredis'
import { StoreError } from '../errors.ts'
import { liveGrants } from './access-store.ts'
import type { AccessStore, Grant, GrantLimits, PutGrantResult, RevokeResult, Session } from './access-store.ts'
import { limit } from './redis-codec.ts'
import { keyPart } from './redis-keys.ts'
import type { RedisKeys } from './redis-keys.ts'
import type { RedisScriptRunner } from './redis-script-runner.ts'

/**
 * `RedisStore.access`: the access state shared by every instance on the
 * store (docs/access.md). Each write is one script of
 * src/store/redis-access-scripts.ts, so it is atomic for every instance;
 * reads are single commands. Keys (src/store/redis-keys.ts): a hash of grants
 * per uid, a sorted set of grants per network (so that `grantsIn` is one
 * range read), a string per session, a sorted set of session ids per uid (for
 * `revoke`), a counter per use key and one epoch counter.
 *
 * Reads judge expiry by the caller's `now`; Redis's own expiry only collects
 * keys nobody can read any more, a margin after their last entry ends
 * (ACCESS_EXPIRY_GRACE_MS, which says why).
 */
export class RedisAccess implements AccessStore {
  readonly #client: Redis | Cluster
  readonly #runner: RedisScriptRunner
  readonly #keys: RedisKeys

  constructor (client: Redis | Cluster, runner: RedisScriptRunner, keys: RedisKeys) {
    this.#client = client
    this.#runner = runner
    this.#keys = keys
  }

  /** One script: planGrant's rule restated in Lua over the uid's stored grants. */
  async putGrant (grant: Grant, limits: GrantLimits): Promise<PutGrantResult> {
    const k = this.#keys
    const [renewed, evicted] = await this.#runner.script('putGrant', 'smPutGrant',
      [k.grantsPrefix + keyPart(grant.uid), k.grantsInPrefix + keyPart(grant.network), k.accessEpoch],
      [k.grantsInPrefix, grantJson(grant), limit(limits.perUid), limit(limits.pathsPerNetwork)]) as [number, string[]]
    return { renewed: renewed === 1, evicted: evicted.map(parseGrant) }
  }

  async grantsOf (uid: string, now: number): Promise<Grant[]> {
    const stored = await this.#runner.run('grantsOf', () => this.#client.hvals(this.#keys.grantsPrefix + keyPart(uid)))
    return liveGrants(stored.map(parseGrant), now)
  }

  async grantsIn (network: string, now: number): Promise<Grant[]> {
    const stored = await this.#runner.run('grantsIn', () =>
      this.#client.zrangebyscore(this.#keys.grantsInPrefix + keyPart(network), `(${now}`, '+inf'))
    return liveGrants(stored.map(parseGrant), now)
  }

  async revoke (uid: string, now: number): Promise<RevokeResult> {
    const k = this.#keys
    const [grants, sessions] = await this.#runner.script('revoke', 'smRevoke',
      [k.grantsPrefix + keyPart(uid), k.sessionsOfPrefix + keyPart(uid), k.accessEpoch],
      [k.grantsInPrefix, k.sessionPrefix, uid, now]) as [number, number]
    return { grants, sessions }
  }

  async putSessions (sessions: readonly Session[]): Promise<void> {
    await this.#putSessions('putSessions', sessions, '0')
  }

  async slideSessions (sessions: readonly Session[]): Promise<void> {
    await this.#putSessions('slideSessions', sessions, '1')
  }

  /** One script per session, all in one pipeline: one round-trip. */
  async #putSessions (operation: string, sessions: readonly Session[], slideOnly: '0' | '1'): Promise<void> {
    const k = this.#keys
    const replies = await this.#runner.run(operation, async () => {
      if (sessions.length === 0) return []
      const pipeline = this.#client.pipeline() as unknown as Record<'smPutSession', (...args: Array<string | number>) => void> & ChainableCommander
      for (const s of sessions) {
        pipeline.smPutSession(2, k.sessionPrefix + keyPart(s.id), k.sessionsOfPrefix + keyPart(s.uid), k.sessionsOfPrefix, sessionJson(s), s.id, slideOnly)
      }
      return await pipeline.exec()
    })
    const failed = replies?.find(([err]) => err !== null)?.[0]
    if (failed !== undefined && failed !== null) throw new StoreError(`redis store ${operation} failed: ${failed.message}`)
  }

  /** Redis may not have expired a session yet: `now` decides. */
  async session (id: string, now: number): Promise<Session | undefined> {
    const raw = await this.#runner.run('session', () => this.#client.get(this.#keys.sessionPrefix + keyPart(id)))
    if (raw === null) return undefined
    const session = JSON.parse(raw) as Session
    return session.expiresAt > now ? session : undefined
  }

  async dropSessions (ids: readonly string[]): Promise<void> {
    const k = this.#keys
    if (ids.length === 0) {
      this.#runner.check()
      return
    }
    await this.#runner.script('dropSessions', 'smDropSessions',
      [k.accessEpoch, ...ids.map((id) => k.sessionPrefix + keyPart(id))], [k.sessionsOfPrefix, ...ids])
  }

  async countUse (key: string, until: number): Promise<number> {
    return await this.#runner.script('countUse', 'smCountUse', [this.#keys.usePrefix + keyPart(key)], [until]) as number
  }

  async epoch (): Promise<string> {
    return await this.#runner.run('epoch', () => this.#client.get(this.#keys.accessEpoch)) ?? '0'
  }
}

/**
 * A grant as stored: its own fields only, in one order, so that the same
 * grant is the same string in both indexes (the network's sorted set holds
 * it as a member, removed by value).
 */
function grantJson (g: Grant): string {
  return JSON.stringify({
    uid: g.uid,
    network: g.network,
    agent: g.agent,
    userAgent: g.userAgent,
    clientIp: g.clientIp,
    directory: g.directory,
    grantedAt: g.grantedAt,
    expiresAt: g.expiresAt
  })
}

function parseGrant (raw: string): Grant {
  return JSON.parse(raw) as Grant
}

function sessionJson (s: Session): string {
  return JSON.stringify({ id: s.id, uid: s.uid, network: s.network, agent: s.agent, directory: s.directory, expiresAt: s.expiresAt })
}
