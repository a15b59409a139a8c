import { Cluster } from 'ioredis'
import type { ChainableCommander, Redis } from 'ioredis'
import { StoreClosedError, StoreNotDurableError } from '../errors.ts'
import type { StoreDurability } from '../meter/index.ts'
import type { RedisKeys } from './redis-keys.ts'

// What was delivered is never delivered again under another id (docs/scaling.md,
// "Redis settings").
// A seal moves records into reports; if Redis loses the seal after a report
// went out (a restart from files that miss it, a failover to a replica that
// never got it), the records come back and the next seal reports them again
// under a new report_id. So a report is handed out for delivery only once
// the server has made the seal durable: fsynced to its AOF (WAITAOF on Redis
// ≥ 7.2; on an older server only `appendfsync always` says so, checked in its
// config) and acknowledged by a replica when it has replicas (WAIT), since a
// failover would promote one.

/** What a Redis server says about itself, read from the node that owns the store's slot. */
export interface DurabilityFacts {
  /** WAITAOF is known and allowed (Redis ≥ 7.2). */
  waitaof: boolean
  /** WAIT is allowed. */
  wait: boolean
  /** Whether the AOF is on (CONFIG GET appendonly, else INFO persistence); undefined when neither answers. */
  aof: boolean | undefined
  /** CONFIG GET appendfsync (`always`, `everysec`, `no`); undefined when CONFIG is renamed or forbidden. */
  fsync: string | undefined
  /** Replicas connected and online (INFO replication). */
  replicas: number
}

/** The waits that make a write durable on a server, and what `/health` says about it. */
export interface DurabilityPlan extends StoreDurability {
  /** `WAITAOF 1 0 <timeout>` after a write. */
  waitaof: boolean
  /** `WAIT 1 <timeout>` after a write. */
  wait: boolean
}

/**
 * What a server with these facts can promise. Durable when it has at least
 * one way: the AOF with WAITAOF, the AOF with `appendfsync always` (every
 * reply comes after the fsync), or replicas with WAIT. With replicas, WAIT
 * is done as well as the AOF's way: a failover promotes a replica, and a
 * replica that missed the seal would bring the records back.
 */
export function planDurability (f: DurabilityFacts): DurabilityPlan {
  const waitaof = f.waitaof && f.aof === true
  const aofAlways = f.aof === true && f.fsync === 'always'
  const wait = f.wait && f.replicas > 0
  const ways = [waitaof ? 'waitaof' : aofAlways ? 'aof-always' : '', wait ? 'replicas' : ''].filter((w) => w !== '')
  if (ways.length > 0) return { durable: true, code: ways.join('+'), waitaof, wait }
  return { durable: false, code: whyNot(f), waitaof: false, wait: false }
}

function whyNot (f: DurabilityFacts): string {
  if (f.replicas > 0 && !f.wait) return 'wait-denied'
  if (f.aof === false) return 'aof-off'
  if (f.aof === undefined || f.fsync === undefined) return 'config-hidden'
  return f.fsync === 'everysec' || f.fsync === 'no' ? `fsync-${f.fsync}` : 'config-hidden'
}

/**
 * How long the wait after a seal's commit may take, in ms. The seal runs in
 * the collector's queue before the next flush and lease renewal, so it is
 * short; a seal not confirmed by then is confirmed by the delivery gate.
 */
export const SEAL_WAIT_MS = 1000
/** How long the delivery gate's wait may take, in ms (WAITAOF with `everysec` needs up to about 1 s). */
export const GATE_WAIT_MS = 2000

/** The status before the store has reached its server. */
const UNKNOWN: StoreDurability = Object.freeze({ durable: false, code: 'unknown' })
/** Outbox entries one confirmation covers (their ids, read in the confirming round-trip). */
const CONFIRM_BATCH = 1000
/** Confirmed ids kept; past this the set starts again (a dropped id only costs one more confirmation). */
const CONFIRMED_MAX = 10_000

type Reply = [Error | null, unknown]

/**
 * The durability side of a redis store: finds out what the server promises
 * (`refresh`, at open, on every (re)connection, before every confirmation)
 * and confirms that the outbox is durable before its reports go out
 * (`confirm` after a seal's commit, `gate` before the head is handed out).
 *
 * Every round-trip is one pipeline that starts with a key of the store, so
 * that a Cluster sends it, WAIT and WAITAOF included, to the node that owns
 * the store's slot. The waits go on a connection of their own: WAIT and
 * WAITAOF block their connection until they answer, and the store's must not
 * wait (flushes, lease renewals); the probe write makes a wait on any
 * connection cover every earlier write.
 */
export class RedisDurability {
  readonly #client: Redis | Cluster
  readonly #keys: RedisKeys
  readonly #onChange: ((status: StoreDurability) => void) | undefined
  #plan: DurabilityPlan | undefined
  /** When the server was last asked (ms since the epoch). */
  #checkedAt = 0
  #refreshing: Promise<DurabilityPlan> | undefined
  /** Report ids known durable: handed out without another round-trip. */
  #confirmed = new Set<string>()
  /** The connection for the waits, made at the first one. */
  #waiter: Redis | Cluster | undefined
  #waiterReady: Promise<void> | undefined
  #closed = false

  constructor (client: Redis | Cluster, keys: RedisKeys, onChange?: (status: StoreDurability) => void) {
    this.#client = client
    this.#keys = keys
    this.#onChange = onChange
  }

  /** What the last look at the server found (`unknown` before the first). */
  get status (): StoreDurability {
    return this.#plan === undefined ? UNKNOWN : { durable: this.#plan.durable, code: this.#plan.code }
  }

  /**
   * {@link status}, and a look in the background when the last one is older
   * than `maxAgeMs`: a replica attached or a config changed while nothing
   * was sealed shows up at the next call.
   */
  current (maxAgeMs: number): StoreDurability {
    if (Date.now() - this.#checkedAt > maxAgeMs) this.refresh().catch(() => {})
    return this.status
  }

  /** Ask the server again (one round-trip; calls made while one is under way share it). */
  refresh (): Promise<DurabilityPlan> {
    this.#refreshing ??= this.#detect().finally(() => { this.#refreshing = undefined })
    return this.#refreshing
  }

  /**
   * Make what the outbox holds durable now: one round-trip reads the ids of
   * its first entries, writes a probe (`durable_at` in `{p}:meta`) and waits
   * for it as the plan says. A wait covers every write the server took before
   * it, whoever made it; the probe is this connection's own write, so the wait
   * counts from it even if the connection is new (a failover). Being in one
   * pipeline, the ids and the wait come from the same server.
   * @throws {StoreNotDurableError} when a wait timed out
   */
  async confirm (timeoutMs: number): Promise<void> {
    const plan = await this.refresh()
    const client = plan.durable ? await this.#waitingClient() : this.#client
    const p = client.pipeline().lrange(this.#keys.outbox, 0, CONFIRM_BATCH - 1)
    if (plan.durable) p.hset(this.#keys.meta, 'durable_at', Date.now())
    if (plan.waitaof) p.call('WAITAOF', '1', '0', String(timeoutMs))
    if (plan.wait) p.call('WAIT', '1', String(timeoutMs))
    const replies = await exec(p)
    const ids = result(replies[0]) as string[]
    if (plan.durable) result(replies[1])
    let i = plan.durable ? 2 : 1
    if (plan.waitaof && ((result(replies[i++]) as number[])[0] ?? 0) < 1) {
      throw new StoreNotDurableError(`reports wait: the AOF was not fsynced within ${timeoutMs} ms of the seal (WAITAOF)`)
    }
    if (plan.wait && (result(replies[i]) as number) < 1) {
      throw new StoreNotDurableError(`reports wait: no replica acknowledged the seal within ${timeoutMs} ms (WAIT)`)
    }
    if (this.#confirmed.size > CONFIRMED_MAX) this.#confirmed.clear()
    for (const id of ids) this.#confirmed.add(id)
  }

  /**
   * Resolve once report `reportId` (the outbox head) may be delivered: at once
   * when it is known durable, else after a confirmation.
   * @throws {StoreNotDurableError} when it cannot be confirmed now: try later
   */
  async gate (reportId: string, timeoutMs: number): Promise<void> {
    if (this.#confirmed.has(reportId)) return
    await this.confirm(timeoutMs)
    if (!this.#confirmed.has(reportId)) {
      throw new StoreNotDurableError('reports wait: the outbox changed while its durability was confirmed; read it again')
    }
  }

  /** Close the connection for the waits (the store's own client is the store's to close). Idempotent. */
  close (): void {
    this.#closed = true
    this.#waiter?.disconnect()
  }

  async #waitingClient (): Promise<Redis | Cluster> {
    if (this.#closed) throw new StoreClosedError()
    if (this.#waiter === undefined) {
      const main = this.#client
      const waiter = main instanceof Cluster ? main.duplicate() : main.duplicate()
      waiter.on('error', () => {}) // its commands reject; confirm() reports those
      this.#waiter = waiter
      this.#waiterReady = waiter.connect().catch(() => { this.#waiterReady = undefined })
    }
    if (this.#waiter.status !== 'ready') await (this.#waiterReady ?? Promise.resolve())
    return this.#waiter
  }

  async #detect (): Promise<DurabilityPlan> {
    const replies = await exec(this.#client.pipeline()
      .exists(this.#keys.meta)
      .call('WAITAOF', '0', '0', '0')
      .call('WAIT', '0', '0')
      .config('GET', 'appendonly')
      .config('GET', 'appendfsync')
      .info('persistence')
      .info('replication'))
    result(replies[0]) // a connection error fails the whole look
    const [, waitaof, wait, appendonly, appendfsync, persistence, replication] = replies.map(([err, value]) => err === null ? value : undefined)
    const aofConfig = configValue(appendonly)
    const aofInfo = infoField(persistence, 'aof_enabled')
    const plan = planDurability({
      waitaof: waitaof !== undefined,
      wait: wait !== undefined,
      aof: aofConfig !== undefined ? aofConfig === 'yes' : aofInfo !== undefined ? aofInfo === '1' : undefined,
      fsync: configValue(appendfsync),
      replicas: typeof replication === 'string' ? (replication.match(/^slave\d+:.*state=online/gm) ?? []).length : 0
    })
    const changed = plan.code !== this.#plan?.code
    this.#plan = plan
    this.#checkedAt = Date.now()
    if (changed) this.#onChange?.(this.status)
    return plan
  }
}

/** A pipeline's replies; null (a MULTI aborted by WATCH) cannot happen here. */
async function exec (p: ChainableCommander): Promise<Reply[]> {
  return (await p.exec() ?? []) as Reply[]
}

function result (reply: Reply | undefined): unknown {
  if (reply === undefined) throw new Error('a reply is missing from the pipeline')
  if (reply[0] !== null) throw reply[0]
  return reply[1]
}

/** `CONFIG GET name` → its value (`['name', 'value']`, or a map in RESP3). */
function configValue (reply: unknown): string | undefined {
  if (Array.isArray(reply)) return typeof reply[1] === 'string' ? reply[1] : undefined
  if (reply !== null && typeof reply === 'object') {
    const value = Object.values(reply)[0]
    return typeof value === 'string' ? value : undefined
  }
  return undefined
}

function infoField (info: unknown, name: string): string | undefined {
  if (typeof info !== 'string') return undefined
  return new RegExp(`^${name}:(\\S*)`, 'm').exec(info)?.[1]
}
