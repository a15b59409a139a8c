import { liveGrants, planGrant } from './access-store.ts'
import type { AccessStore, Grant, GrantLimits, PutGrantResult, RevokeResult, Session } from './access-store.ts'

/**
 * `MemoryStore.access`: the access state in this process (docs/access.md).
 * Every operation is synchronous underneath, so each one is atomic.
 */
export class MemoryAccess implements AccessStore {
  /** uid → its grants. */
  readonly #grants = new Map<string, Grant[]>()
  readonly #sessions = new Map<string, Session>()
  readonly #uses = new Map<string, { count: number, until: number }>()
  readonly #check: () => void
  #epoch = 0
  /** Writes since the last sweep. */
  #writes = 0

  /** @param check - throws once the store is closed */
  constructor (check: () => void) {
    this.#check = check
  }

  async putGrant (grant: Grant, limits: GrantLimits): Promise<PutGrantResult> {
    this.#check()
    const plan = planGrant(this.#grants.get(grant.uid) ?? [], grant, limits)
    this.#grants.set(grant.uid, plan.keep)
    if (plan.evicted.length > 0) this.#epoch++
    return { renewed: plan.renewed, evicted: plan.evicted }
  }

  async grantsOf (uid: string, now: number): Promise<Grant[]> {
    this.#check()
    return liveGrants(this.#grants.get(uid) ?? [], now).map((g) => ({ ...g }))
  }

  async grantsIn (network: string, now: number): Promise<Grant[]> {
    this.#check()
    const found: Grant[] = []
    for (const grants of this.#grants.values()) for (const g of grants) if (g.network === network) found.push({ ...g })
    return liveGrants(found, now)
  }

  async revoke (uid: string, now: number): Promise<RevokeResult> {
    this.#check()
    const grants = liveGrants(this.#grants.get(uid) ?? [], now).length
    this.#grants.delete(uid)
    let sessions = 0
    for (const [id, s] of this.#sessions) {
      if (s.uid !== uid) continue
      this.#sessions.delete(id)
      if (s.expiresAt > now) sessions++
    }
    this.#epoch++
    return { grants, sessions }
  }

  async putSessions (sessions: readonly Session[]): Promise<void> {
    this.#check()
    for (const session of sessions) this.#sessions.set(session.id, { ...session })
    this.#wrote()
  }

  async session (id: string, now: number): Promise<Session | undefined> {
    this.#check()
    const s = this.#sessions.get(id)
    if (s === undefined) return undefined
    if (s.expiresAt > now) return { ...s }
    this.#sessions.delete(id)
    return undefined
  }

  async slideSessions (sessions: readonly Session[]): Promise<void> {
    this.#check()
    for (const session of sessions) {
      const stored = this.#sessions.get(session.id)
      if (stored?.uid === session.uid) stored.expiresAt = session.expiresAt
    }
  }

  async dropSessions (ids: readonly string[]): Promise<void> {
    this.#check()
    let dropped = false
    for (const id of ids) dropped = this.#sessions.delete(id) || dropped
    if (dropped) this.#epoch++
  }

  async countUse (key: string, until: number): Promise<number> {
    this.#check()
    const use = this.#uses.get(key)
    const count = (use?.count ?? 0) + 1
    this.#uses.set(key, { count, until: Math.max(until, use?.until ?? 0) })
    this.#wrote()
    return count
  }

  async epoch (): Promise<string> {
    this.#check()
    return String(this.#epoch)
  }

  /** Sweep now and then as sessions and counters are written, so that they stay bounded without `expire`. */
  #wrote (): void {
    if (++this.#writes < 4096) return
    this.#writes = 0
    this.sweep(Date.now())
  }

  /** Forget expired grants, sessions and counters (the memory store's `expire`, and every 4,096 writes). */
  sweep (now: number): void {
    for (const [id, s] of this.#sessions) if (s.expiresAt <= now) this.#sessions.delete(id)
    for (const [key, use] of this.#uses) if (use.until <= now) this.#uses.delete(key)
    for (const [uid, grants] of this.#grants) {
      const live = liveGrants(grants, now)
      if (live.length === 0) this.#grants.delete(uid)
      else this.#grants.set(uid, live)
    }
  }
}
