import type Database from 'better-sqlite3'
import { planGrant, sameGrant } from './access-store.ts'
import type { AccessStore, Grant, GrantLimits, PutGrantResult, RevokeResult, Session } from './access-store.ts'
import { ACCESS_EPOCH_KEY } from './sqlite-schema.ts'

/**
 * How the store runs one operation (`SqliteStore`'s `#run`): the closed
 * check, a locked database retried, SQLite failures as StoreError.
 */
export type SqliteRun = <T>(operation: string, fn: () => T) => Promise<T>

/** A grant's columns, named as {@link Grant}'s fields so that a row is a Grant as read. */
const GRANT_COLUMNS = 'uid, network, agent, user_agent AS userAgent, client_ip AS clientIp, directory, ' +
  'granted_at AS grantedAt, expires_at AS expiresAt'
/**
 * Oldest first, as `liveGrants` orders them; ties in creation order (a
 * renewal is a new row), the order MemoryAccess keeps them in, so that
 * planGrant picks the same group to evict in both stores.
 */
const GRANT_ORDER = 'ORDER BY granted_at, rowid'

/**
 * `SqliteStore.access`: the access state in the store's file (tables
 * `access_grants`, `access_sessions`, `access_uses`, the epoch a row of
 * `meta`; src/store/sqlite-schema.ts), shared by every process that opens
 * it (`--workers N`). Writes that read first are one `BEGIN IMMEDIATE`
 * transaction, as in the rest of the store: a deferred one would fail with
 * SQLITE_BUSY_SNAPSHOT when another process wrote in between. Single
 * statements are their own transaction. Reads never delete: expired rows
 * are filtered out, and removed by `putGrant` (that uid's) and by the
 * store's `expire` ({@link deleteExpired}), so that a read needs no write lock.
 */
export class SqliteAccess implements AccessStore {
  readonly #run: SqliteRun
  readonly #grantsOfUid
  readonly #liveGrantsOf
  readonly #liveGrantsIn
  readonly #insertGrant
  readonly #deleteGrant
  readonly #revokeGrants
  readonly #revokeSessions
  readonly #putSession
  readonly #session
  readonly #dropSession
  readonly #countUse
  readonly #epoch
  readonly #bumpEpoch
  readonly #expireGrants
  readonly #expireSessions
  readonly #expireUses

  readonly #putGrantTx
  readonly #revokeTx
  readonly #dropSessionsTx
  readonly #putSessionsTx
  readonly #slideSession
  readonly #slideSessionsTx

  /**
   * @param db - the store's database, migrated (tables of schema 3)
   * @param run - the store's `#run`, so that these calls retry and fail like its others
   */
  constructor (db: Database.Database, run: SqliteRun) {
    this.#run = run
    this.#grantsOfUid = db.prepare<[string], Grant>(`SELECT ${GRANT_COLUMNS} FROM access_grants WHERE uid = ? ${GRANT_ORDER}`)
    this.#liveGrantsOf = db.prepare<[string, number], Grant>(
      `SELECT ${GRANT_COLUMNS} FROM access_grants WHERE uid = ? AND expires_at > ? ${GRANT_ORDER}`)
    this.#liveGrantsIn = db.prepare<[string, number], Grant>(
      `SELECT ${GRANT_COLUMNS} FROM access_grants WHERE network = ? AND expires_at > ? ${GRANT_ORDER}`)
    this.#insertGrant = db.prepare<[string, string, string, string, string, string, number, number]>(`
      INSERT INTO access_grants (uid, network, agent, directory, user_agent, client_ip, granted_at, expires_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
    this.#deleteGrant = db.prepare<[string, string, string, string]>(
      'DELETE FROM access_grants WHERE uid = ? AND network = ? AND agent = ? AND directory = ?')
    // RETURNING the expiry: revoke counts the live ones among those it removed.
    this.#revokeGrants = db.prepare<[string], number>('DELETE FROM access_grants WHERE uid = ? RETURNING expires_at').pluck()
    this.#revokeSessions = db.prepare<[string], number>('DELETE FROM access_sessions WHERE uid = ? RETURNING expires_at').pluck()
    // An upsert rather than INSERT OR REPLACE: a sliding session is written
    // often, and an update leaves the uid index alone.
    this.#putSession = db.prepare<[string, string, string, string, string, number]>(`
      INSERT INTO access_sessions (id, uid, network, agent, directory, expires_at) VALUES (?, ?, ?, ?, ?, ?)
      ON CONFLICT (id) DO UPDATE SET uid = excluded.uid, network = excluded.network, agent = excluded.agent,
        directory = excluded.directory, expires_at = excluded.expires_at`)
    this.#session = db.prepare<[string, number], Session>(
      'SELECT id, uid, network, agent, directory, expires_at AS expiresAt FROM access_sessions WHERE id = ? AND expires_at > ?')
    this.#dropSession = db.prepare<[string]>('DELETE FROM access_sessions WHERE id = ?')
    // One statement: atomic across processes without a transaction of its own.
    this.#countUse = db.prepare<[string, number], number>(`
      INSERT INTO access_uses (key, count, until) VALUES (?, 1, ?)
      ON CONFLICT (key) DO UPDATE SET count = count + 1, until = max(until, excluded.until)
      RETURNING count`).pluck()
    this.#epoch = db.prepare<[string], unknown>('SELECT value FROM meta WHERE key = ?').pluck()
    this.#bumpEpoch = db.prepare<[string]>(
      'INSERT INTO meta (key, value) VALUES (?, 1) ON CONFLICT (key) DO UPDATE SET value = value + 1')
    this.#expireGrants = db.prepare<[number]>('DELETE FROM access_grants WHERE expires_at <= ?')
    this.#expireSessions = db.prepare<[number]>('DELETE FROM access_sessions WHERE expires_at <= ?')
    this.#expireUses = db.prepare<[number]>('DELETE FROM access_uses WHERE until <= ?')

    this.#putGrantTx = db.transaction((grant: Grant, limits: GrantLimits) => this.#putGrantIn(grant, limits)).immediate
    this.#revokeTx = db.transaction((uid: string, now: number) => this.#revokeIn(uid, now)).immediate
    this.#dropSessionsTx = db.transaction((ids: readonly string[]) => this.#dropSessionsIn(ids)).immediate
    this.#slideSession = db.prepare<[number, string, string]>('UPDATE access_sessions SET expires_at = ? WHERE id = ? AND uid = ?')
    this.#slideSessionsTx = db.transaction((sessions: readonly Session[]) => {
      for (const x of sessions) this.#slideSession.run(x.expiresAt, x.id, x.uid)
    }).immediate
    this.#putSessionsTx = db.transaction((sessions: readonly Session[]) => {
      for (const x of sessions) this.#putSession.run(x.id, x.uid, x.network, x.agent, x.directory, x.expiresAt)
    }).immediate
  }

  async putGrant (grant: Grant, limits: GrantLimits): Promise<PutGrantResult> {
    return this.#run('access.putGrant', () => this.#putGrantTx(grant, limits))
  }

  async grantsOf (uid: string, now: number): Promise<Grant[]> {
    return this.#run('access.grantsOf', () => this.#liveGrantsOf.all(uid, now))
  }

  async grantsIn (network: string, now: number): Promise<Grant[]> {
    return this.#run('access.grantsIn', () => this.#liveGrantsIn.all(network, now))
  }

  async revoke (uid: string, now: number): Promise<RevokeResult> {
    return this.#run('access.revoke', () => this.#revokeTx(uid, now))
  }

  /** One transaction for the lot: the sessions of a flush interval cost one commit. */
  async putSessions (sessions: readonly Session[]): Promise<void> {
    if (sessions.length === 0) return await this.#run('access.putSessions', () => undefined)
    await this.#run('access.putSessions', () => this.#putSessionsTx(sessions))
  }

  async slideSessions (sessions: readonly Session[]): Promise<void> {
    if (sessions.length === 0) return await this.#run('access.slideSessions', () => undefined)
    await this.#run('access.slideSessions', () => this.#slideSessionsTx(sessions))
  }

  async session (id: string, now: number): Promise<Session | undefined> {
    return this.#run('access.session', () => this.#session.get(id, now))
  }

  async dropSessions (ids: readonly string[]): Promise<void> {
    // No transaction (no write lock) for nothing to drop; the closed check still applies.
    await this.#run('access.dropSessions', () => {
      if (ids.length > 0) this.#dropSessionsTx(ids)
    })
  }

  async countUse (key: string, until: number): Promise<number> {
    return this.#run('access.countUse', () => this.#countUse.get(key, until) as number)
  }

  /** How often access was taken back in this file: a row of `meta` that every process on it reads. */
  async epoch (): Promise<string> {
    return this.#run('access.epoch', () => String(this.#epoch.get(ACCESS_EPOCH_KEY) ?? 0))
  }

  /**
   * Remove expired grants, sessions and use counts, in the caller's
   * transaction (the store's `expire`, which the reporter runs every tick).
   * Each is a range of an expiry index. The epoch stays: nothing expired was
   * being returned.
   */
  deleteExpired (now: number): void {
    this.#expireGrants.run(now)
    this.#expireSessions.run(now)
    this.#expireUses.run(now)
  }

  #putGrantIn (grant: Grant, limits: GrantLimits): PutGrantResult {
    const existing = this.#grantsOfUid.all(grant.uid)
    const plan = planGrant(existing, grant, limits)
    // Every row of the uid that is not kept goes: expired, evicted, and the
    // one being renewed (inserted again below, so that it is the newest row).
    for (const g of existing) {
      if (sameGrant(g, grant) || !plan.keep.some((k) => sameGrant(k, g))) this.#deleteGrant.run(g.uid, g.network, g.agent, g.directory)
    }
    const g = grant
    this.#insertGrant.run(g.uid, g.network, g.agent, g.directory, g.userAgent, g.clientIp, g.grantedAt, g.expiresAt)
    if (plan.evicted.length > 0) this.#bumpEpoch.run(ACCESS_EPOCH_KEY)
    return { renewed: plan.renewed, evicted: plan.evicted }
  }

  #revokeIn (uid: string, now: number): RevokeResult {
    const grants = this.#revokeGrants.all(uid).filter((at) => at > now).length
    const sessions = this.#revokeSessions.all(uid).filter((at) => at > now).length
    // Even when nothing was left here: an instance may still cache what
    // expired and was removed since.
    this.#bumpEpoch.run(ACCESS_EPOCH_KEY)
    return { grants, sessions }
  }

  #dropSessionsIn (ids: readonly string[]): void {
    let dropped = 0
    for (const id of ids) dropped += this.#dropSession.run(id).changes
    if (dropped > 0) this.#bumpEpoch.run(ACCESS_EPOCH_KEY)
  }
}
