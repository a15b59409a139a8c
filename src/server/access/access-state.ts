import { createHash } from 'node:crypto'
import type { AccessStore, Grant, GrantLimits, PutGrantResult, RevokeResult, Session } from '../../store/access-store.ts'
import { AccessUnavailableError } from '../../errors.ts'
import { AgentHashes } from './sessions.ts'
import { inScope } from './url-signer.ts'
import type { SessionBinding, SessionIds } from './sessions.ts'

/**
 * The store's grants and sessions as the hot path reads them
 * (docs/access.md#how-fresh-an-instance-is): a short in-process cache, so a
 * player's requests cost no store round-trip each.
 *
 * - A session found stays cached until its expiry or until the epoch moves.
 * - A session not found, and a network's grants, are cached for
 *   {@link SHORT_CACHE_MS}: a grant posted on one instance is honoured by the
 *   others within that.
 * - The epoch is read every {@link EPOCH_POLL_MS}; when it moves (a
 *   revocation, an eviction, anywhere) everything cached is dropped. So a
 *   revocation stops every instance within one poll, plus a request's own
 *   time. When the epoch cannot be read for {@link STALE_AFTER_MS}, the cache
 *   is dropped too, so that nothing revoked meanwhile is still honoured; a
 *   lookup then asks the store, and fails closed.
 * - A session is written when first made and then at most once per
 *   {@link TOUCH_EVERY_MS} as it slides, not per request; the slides of
 *   {@link WRITE_EVERY_MS} go together.
 */

/** How long a missing session or a network's grants are cached. */
export const SHORT_CACHE_MS = 1000
/** How often the epoch is read. */
export const EPOCH_POLL_MS = 250
/** An epoch unread for this long drops the cache. */
export const STALE_AFTER_MS = 1000
/** A session's expiry in the store is moved forward at most this often per instance. */
export const TOUCH_EVERY_MS = 60_000
/** Slides are written this long after the first of a batch. */
export const WRITE_EVERY_MS = 50
/** Entries kept per cache; the oldest goes first. */
const MAX_ENTRIES = 50_000

/** Options of {@link AccessState}. */
export interface AccessStateOptions {
  store: AccessStore
  ids: SessionIds
  /** `SESSION_TTL` in seconds. */
  sessionTtl: number
  /** ms since the epoch. */
  now: () => number
  /** A write that failed (a session made or slid): logged, the request is not refused for it. */
  onWriteError?: ((err: unknown) => void) | undefined
}

/** Grants and sessions, cached in front of the store; see the file comment. */
export class AccessState {
  readonly #store: AccessStore
  readonly #ids: SessionIds
  readonly #ttlMs: number
  readonly #now: () => number
  readonly #onWriteError: (err: unknown) => void
  /** id → the session, or undefined (not found) with when to ask again. */
  readonly #sessions = new Map<string, { session: Session | undefined, until: number }>()
  /** network → its live grants, until when. */
  readonly #grants = new Map<string, { grants: NetworkGrants, until: number }>()
  /** Lookups in flight, so that a burst of misses asks once. */
  readonly #pending = new Map<string, Promise<unknown>>()
  readonly #agents = new AgentHashes()
  /** Sessions opened in this turn of the event loop, not written yet. */
  #opened: Session[] = []
  /** Sessions slid and not written yet, by id. */
  readonly #slid = new Map<string, Session>()
  #writeTimer: NodeJS.Timeout | undefined
  #epoch: string | undefined
  #epochReadAt = 0
  /** Moves with every {@link forget}: a lookup that started before one does not cache its answer. */
  #generation = 0
  #timer: NodeJS.Timeout | undefined

  constructor (options: AccessStateOptions) {
    this.#store = options.store
    this.#ids = options.ids
    this.#ttlMs = options.sessionTtl * 1000
    this.#now = options.now
    this.#onWriteError = options.onWriteError ?? (() => {})
  }

  /** `SESSION_TTL` in seconds. */
  get sessionTtl (): number {
    return this.#ttlMs / 1000
  }

  /** What sessions and grants store of a User-Agent header: its hash. */
  agentOf (userAgent: string | undefined): string {
    return this.#agents.of(userAgent)
  }

  /**
   * Grant `grant` (its `agent` the User-Agent as posted; stored hashed).
   * The sessions of grants evicted to stay within `limits` are dropped
   * with them, and this instance forgets what it cached.
   * @throws {AccessUnavailableError} when the store does not answer
   */
  async grant (grant: Grant, limits: GrantLimits): Promise<PutGrantResult> {
    const stored = { ...grant, agent: this.agentOf(grant.agent) }
    return await unavailable(async () => {
      const result = await this.#store.putGrant(stored, limits)
      if (result.evicted.length > 0) await this.#store.dropSessions(result.evicted.map((g) => this.#ids.idOf(g)))
      this.#grants.delete(grant.network)
      if (result.evicted.length > 0) this.forget()
      return result
    })
  }

  /**
   * The uid's live grants, from the store.
   * @throws {AccessUnavailableError} when the store does not answer
   */
  async grantsOf (uid: string): Promise<Grant[]> {
    return await unavailable(async () => await this.#store.grantsOf(uid, this.#now()))
  }

  /**
   * Count one use of `key` (hashed: a uid may be long) and return the count.
   * Kept in the store at least until `until` (ms).
   * @throws {AccessUnavailableError} when the store does not answer
   */
  async countUse (key: string, until: number): Promise<number> {
    const hashed = createHash('sha256').update(key).digest('base64url')
    return await unavailable(async () => await this.#store.countUse(hashed, until))
  }

  /**
   * Revoke every grant and session of `uid`: here at once, elsewhere when
   * their next epoch poll sees it move.
   * @throws {AccessUnavailableError} when the store does not answer
   */
  async revoke (uid: string): Promise<RevokeResult> {
    return await unavailable(async () => {
      const result = await this.#store.revoke(uid, this.#now())
      this.forget()
      return result
    })
  }

  /** Start reading the epoch (the timer does not keep the process alive). */
  start (): void {
    if (this.#timer !== undefined) return
    this.#epochReadAt = Date.now()
    const poll = (): void => { this.pollEpoch().catch(() => {}) }
    this.#timer = setInterval(poll, EPOCH_POLL_MS)
    this.#timer.unref()
    poll()
  }

  /** Stop reading the epoch, and write what is pending. */
  async stop (): Promise<void> {
    clearInterval(this.#timer)
    this.#timer = undefined
    await this.flushWrites()
  }

  /** Read the epoch once; drop the cache when it moved, or when it has not been read for too long. */
  async pollEpoch (): Promise<void> {
    try {
      const epoch = await this.#store.epoch()
      this.#epochReadAt = Date.now()
      // The first read too: what was cached before it is of unknown age.
      if (epoch !== this.#epoch) {
        this.forget()
        this.#epoch = epoch
      }
    } catch (err) {
      if (Date.now() - this.#epochReadAt >= STALE_AFTER_MS) this.forget()
      throw err
    }
  }

  /**
   * Drop everything cached (the epoch moved, or this instance took access
   * back itself), and the writes not made yet: a session opened or slid
   * before a revocation is not written after it (the next request opens it
   * again if something still lets it in).
   */
  forget (): void {
    this.#generation++
    // A lookup in flight may carry what was just taken back: later requests ask afresh.
    this.#pending.clear()
    this.#sessions.clear()
    this.#grants.clear()
    this.#opened = []
    this.#slid.clear()
  }

  /**
   * The live session `id` names, or undefined: from the cache, else the store.
   * An id this server's key did not issue is undefined without asking.
   * @throws {AccessUnavailableError} (the promise rejects) when the store must be asked and cannot answer
   */
  session (id: string): Session | undefined | Promise<Session | undefined> {
    const now = this.#now()
    const hit = this.#sessions.get(id)
    if (hit !== undefined) {
      if (hit.session === undefined ? hit.until > now : hit.session.expiresAt > now) return hit.session
      this.#sessions.delete(id) // expired here: another instance may have slid it, ask again
    }
    if (!this.#ids.issued(id)) return undefined
    const generation = this.#generation
    return this.#once(`s\n${id}`, async () => {
      const session = await this.#store.session(id, now)
      if (generation === this.#generation) remember(this.#sessions, id, { session, until: now + SHORT_CACHE_MS })
      return session
    })
  }

  /**
   * The live grants in `network`, from the cache, else the store.
   * @throws {AccessUnavailableError} (the promise rejects) when the store must be asked and cannot answer
   */
  grantsIn (network: string): NetworkGrants | Promise<NetworkGrants> {
    const now = this.#now()
    const hit = this.#grants.get(network)
    if (hit !== undefined && hit.until > now) return hit.grants
    const generation = this.#generation
    return this.#once(`g\n${network}`, async () => {
      const grants = new NetworkGrants(await this.#store.grantsIn(network, now))
      if (generation === this.#generation) remember(this.#grants, network, { grants, until: now + SHORT_CACHE_MS })
      return grants
    })
  }

  /**
   * The session for `binding`, made (or slid) in the store when needed: its
   * id, for the cookie. A new session is written at the end of this turn of
   * the event loop, with the others opened in it (one transaction, one
   * pipeline), so that another instance knows it by the player's next
   * request; the write is not waited for. The same id comes back for the same binding, so a failed write is
   * retried by the next request.
   */
  open (binding: SessionBinding): string {
    const id = this.#ids.idOf(binding)
    const hit = this.#sessions.get(id)?.session
    if (hit !== undefined) {
      this.slide(hit)
      return id
    }
    const session = { id, ...binding, expiresAt: this.#now() + this.#ttlMs }
    remember(this.#sessions, id, { session, until: session.expiresAt })
    this.#opened.push(session)
    // The sessions opened in one turn of the event loop are written together, at its end.
    if (this.#opened.length === 1) setImmediate(() => { this.#writeOpened() })
    return id
  }

  #writeOpened (): void {
    const batch = this.#opened
    this.#opened = []
    if (batch.length === 0) return
    this.#store.putSessions(batch).catch((err: unknown) => { this.#unwritten(batch, err) })
  }

  /**
   * Move `session`'s expiry to a full `SESSION_TTL` from now, in the store
   * at most once per {@link TOUCH_EVERY_MS}, with the other slides of
   * {@link WRITE_EVERY_MS} (one transaction, one pipeline). A slide never
   * brings back a session revoked meanwhile (slideSessions).
   */
  slide (session: Session): void {
    const expiresAt = this.#now() + this.#ttlMs
    if (expiresAt - session.expiresAt < TOUCH_EVERY_MS) return
    const slid = { ...session, expiresAt }
    remember(this.#sessions, slid.id, { session: slid, until: expiresAt })
    this.#slid.set(slid.id, slid)
    if (this.#writeTimer !== undefined) return
    this.#writeTimer = setTimeout(() => { this.flushWrites().catch(() => {}) }, WRITE_EVERY_MS)
    this.#writeTimer.unref()
  }

  /** Write the slides not written yet (and sessions opened in this turn). */
  async flushWrites (): Promise<void> {
    this.#writeOpened()
    clearTimeout(this.#writeTimer)
    this.#writeTimer = undefined
    if (this.#slid.size === 0) return
    const batch = [...this.#slid.values()]
    this.#slid.clear()
    await this.#store.slideSessions(batch).catch((err: unknown) => { this.#unwritten(batch, err) })
  }

  /** Sessions whose write failed: forgotten here, so that the next request writes each again. */
  #unwritten (sessions: readonly Session[], err: unknown): void {
    for (const s of sessions) if (this.#sessions.get(s.id)?.session === s) this.#sessions.delete(s.id)
    this.#onWriteError(err)
  }

  /** One store lookup per key at a time; a failure becomes AccessUnavailableError. */
  async #once<T> (key: string, lookup: () => Promise<T>): Promise<T> {
    const pending = this.#pending.get(key)
    if (pending !== undefined) return await (pending as Promise<T>)
    const p: Promise<T> = unavailable(lookup).finally(() => {
      if (this.#pending.get(key) === p) this.#pending.delete(key)
    })
    this.#pending.set(key, p)
    return await p
  }
}

/**
 * A network's live grants, indexed by agent and by agent and uid: a network
 * behind one address (a carrier's NAT) may hold thousands, and a request
 * should not look at each.
 */
export class NetworkGrants {
  readonly #byAgent = new Map<string, Grant[]>()
  readonly #byAgentUid = new Map<string, Grant[]>()

  constructor (grants: readonly Grant[]) {
    for (const g of grants) {
      push(this.#byAgent, g.agent, g)
      push(this.#byAgentUid, `${g.agent}\n${g.uid}`, g)
    }
  }

  /** The grants of `agent`, of `uid` only when given, live at `now`, for `path` (any path with `anywhere`). */
  matching (agent: string, uid: string | undefined, path: string, now: number, anywhere: boolean): Grant[] {
    const grants = (uid === undefined ? this.#byAgent.get(agent) : this.#byAgentUid.get(`${agent}\n${uid}`)) ?? []
    return grants.filter((g) => g.expiresAt > now && (anywhere || inScope(path, g.directory)))
  }
}

function push<V> (map: Map<string, V[]>, key: string, value: V): void {
  const list = map.get(key)
  if (list === undefined) map.set(key, [value])
  else list.push(value)
}

/** `fn`'s result; any failure (the store's) as AccessUnavailableError. */
async function unavailable<T> (fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    throw new AccessUnavailableError({ cause: err })
  }
}

function remember<V> (map: Map<string, V>, key: string, value: V): void {
  map.delete(key)
  if (map.size >= MAX_ENTRIES) map.delete(map.keys().next().value as string)
  map.set(key, value)
}
