/**
 * What the access modes keep in the store, so that every instance sharing it
 * agrees (docs/access.md#sessions, #grants, #use-limits): grants, sessions,
 * use counters, and an epoch that moves whenever access is taken back. Each
 * store implements it over its own storage: `MemoryStore.access`,
 * `SqliteStore.access`, `RedisStore.access`. Times are ms since the epoch,
 * always passed in, so tests can drive a manual clock.
 */

/** A grant: `uid` may fetch under `directory` from `network` with the User-Agent hashed as `agent`. */
export interface Grant {
  uid: string
  /** The client network: `203.0.113.0/24` or `2001:db8:1:2::/64` (networkOf, src/ip-address.ts). */
  network: string
  /** The User-Agent's hash (agentHash, below): what requests are matched on. */
  agent: string
  /** The User-Agent as posted, cut at {@link MAX_USER_AGENT} characters: for listing only. */
  userAgent: string
  /** The client address as posted (normalised). */
  clientIp: string
  /** The granted directory, `/videos/t1/` (leading and trailing slash). */
  directory: string
  /** When it was granted or last renewed. */
  grantedAt: number
  expiresAt: number
}

/** A session: its id, and what a request carrying it must match. */
export interface Session {
  /** As the cookie carries it (sessionIds, src/server/access/sessions.ts). */
  id: string
  uid: string
  network: string
  agent: string
  directory: string
  expiresAt: number
}

/** The per-uid limits of grants (`GRANT_MAX_PER_UID`, `GRANT_MAX_PATHS_PER_NETWORK`). */
export interface GrantLimits {
  /** Network+agent pairs one uid may hold; beyond, the oldest pair goes (all its directories). */
  perUid: number
  /** Directories one uid may hold in one network (whatever the agent); beyond, the oldest goes (with every agent). */
  pathsPerNetwork: number
}

/** What {@link AccessStore.putGrant} did. */
export interface PutGrantResult {
  /** Whether the same uid, network, agent and directory was granted already (now renewed). */
  renewed: boolean
  /** Grants removed to stay within the limits, oldest first. */
  evicted: Grant[]
}

/** What {@link AccessStore.revoke} removed. */
export interface RevokeResult {
  grants: number
  sessions: number
}

/**
 * The access state of a store. Expired entries are never returned; they are
 * removed lazily or by the storage's own expiry. Every call may reject with
 * a StoreError (store unreachable) or StoreClosedError; nothing is applied in
 * part.
 */
export interface AccessStore {
  /**
   * Add a grant, or renew the same uid+network+agent+directory (new
   * `grantedAt`, `expiresAt`, `userAgent`, `clientIp`). Then evict the oldest
   * (a directory or pair is as old as its newest grant), until the uid is within `limits`; an eviction moves
   * the epoch. The new grant is never the one evicted.
   */
  putGrant: (grant: Grant, limits: GrantLimits) => Promise<PutGrantResult>
  /** The uid's live grants, oldest first. */
  grantsOf: (uid: string, now: number) => Promise<Grant[]>
  /** The live grants of every uid in `network`, any agent, oldest first. */
  grantsIn: (network: string, now: number) => Promise<Grant[]>
  /**
   * Remove every grant and session of `uid` and move the epoch, so that
   * every instance drops what it cached.
   */
  revoke: (uid: string, now: number) => Promise<RevokeResult>
  /**
   * Store sessions, or replace those with their ids (a new expiry slides
   * one). Written in one go: one transaction, or one pipeline; a failure
   * rejects (some may be written then, each whole).
   */
  putSessions: (sessions: readonly Session[]) => Promise<void>
  /**
   * Move the expiry of those of `sessions` that are still stored for the
   * same uid to theirs; one revoked or dropped meanwhile stays gone.
   */
  slideSessions: (sessions: readonly Session[]) => Promise<void>
  /** The live session with this id. */
  session: (id: string, now: number) => Promise<Session | undefined>
  /** Remove these sessions (those of evicted grants); moves the epoch when one existed. */
  dropSessions: (ids: readonly string[]) => Promise<void>
  /**
   * Count one use of `key` and return the count including it. The count is
   * kept at least until `until` (then it may vanish: the key is no good by
   * then, e.g. a signed URL past its `expires`).
   */
  countUse: (key: string, until: number) => Promise<number>
  /** A number that changes whenever access is taken back (a revocation, an eviction). */
  epoch: () => Promise<string>
}

/** Longest User-Agent kept with a grant, for listing. */
export const MAX_USER_AGENT = 512

/** `grants` less the expired ones, oldest `grantedAt` first. */
export function liveGrants (grants: Iterable<Grant>, now: number): Grant[] {
  return [...grants].filter((g) => g.expiresAt > now).sort((a, b) => a.grantedAt - b.grantedAt)
}

/** Whether two grants are the same one (renewing it replaces it). */
export function sameGrant (a: Grant, b: Grant): boolean {
  return a.uid === b.uid && a.network === b.network && a.agent === b.agent && a.directory === b.directory
}

/**
 * The memory and SQLite stores' rule for {@link AccessStore.putGrant}: the
 * uid's live grants after adding `grant`, and those evicted to stay within
 * `limits`. `existing` are the uid's grants, expired ones included (they are
 * dropped, not counted as evicted).
 */
export function planGrant (existing: readonly Grant[], grant: Grant, limits: GrantLimits): { keep: Grant[], evicted: Grant[], renewed: boolean } {
  const others = liveGrants(existing.filter((g) => !sameGrant(g, grant)), grant.grantedAt)
  const renewed = others.length !== liveGrants(existing, grant.grantedAt).length
  const keep = [...others, grant]
  const evicted: Grant[] = []
  /** Move every kept grant `same` matches to `evicted`. */
  const evict = (same: (g: Grant) => boolean): void => {
    for (let i = keep.length - 1; i >= 0; i--) if (same(keep[i] as Grant)) evicted.push(...keep.splice(i, 1))
  }
  const inNetwork = (g: Grant): boolean => g.network === grant.network
  const directoryOf = (g: Grant): string => g.directory
  // Directories in the new grant's network: the oldest goes (with every agent), never the new one's.
  for (;;) {
    const oldest = oldestGroup(keep.filter(inNetwork), directoryOf, grant.directory, limits.pathsPerNetwork)
    if (oldest === undefined) break
    evict((g) => inNetwork(g) && g.directory === oldest)
  }
  // Network+agent pairs: the oldest pair goes whole, never the new one's.
  for (;;) {
    const oldest = oldestGroup(keep, pairOf, pairOf(grant), limits.perUid)
    if (oldest === undefined) break
    evict((g) => pairOf(g) === oldest)
  }
  evicted.sort((a, b) => a.grantedAt - b.grantedAt)
  return { keep, evicted, renewed }
}

/**
 * When `grants` fall into more than `limit` groups by `key`, the oldest group
 * other than `keep`: the one whose newest grant is the oldest (renewing a
 * grant renews its group). Undefined within the limit.
 */
function oldestGroup (grants: readonly Grant[], key: (g: Grant) => string, keep: string, limit: number): string | undefined {
  const newest = new Map<string, number>()
  for (const g of grants) newest.set(key(g), Math.max(newest.get(key(g)) ?? -Infinity, g.grantedAt))
  if (newest.size <= limit) return undefined
  let oldest: string | undefined
  for (const [k, at] of newest) if (k !== keep && (oldest === undefined || at < (newest.get(oldest) as number))) oldest = k
  return oldest
}

function pairOf (g: Grant): string {
  return `${g.network}\n${g.agent}`
}
