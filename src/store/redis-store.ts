import type { Cluster, Redis, RedisOptions } from 'ioredis'
import { StoreError } from '../errors.ts'
import { compareRecords, emptyCounters } from '../meter/index.ts'
import type {
  ExpireResult, FlushResult, OutboxEntry, OutboxStats, RenderedReport, SealRequest, SealResult,
  StoreCounters, StoreDurability, UsageDelta, UsagePolicy, UsageRecord, UsageStore, UsageSummary
} from '../meter/index.ts'
import type { CommittedLogCursor, FailureDetail, LogCursor, OutboxItem } from '../meter/index.ts'
import { RedisAccess } from './access-redis.ts'
import { createRedisClient } from './redis-client.ts'
import { limit, toDiscarded, toRecords } from './redis-codec.ts'
import { RedisDurability } from './redis-durability.ts'
import { RedisFlusher } from './redis-flusher.ts'
import { redisKeys } from './redis-keys.ts'
import type { RedisKeys } from './redis-keys.ts'
import { RedisOutbox } from './redis-outbox.ts'
import { RedisScriptRunner, messageOf } from './redis-script-runner.ts'
import { RedisSealer } from './redis-sealer.ts'

/** Options of {@link RedisStore}. */
export interface RedisStoreOptions {
  /**
   * Every key is `{prefix}:…`: one hash tag, so a Redis Cluster keeps the
   * whole store in one slot. Instances that share usage use the same prefix.
   * Letters, digits and `: _ . -`; `{` and `}` are refused.
   */
  prefix: string
  /**
   * Most deltas one flush script merges. A larger batch is split into chunks
   * of this size, one script each, all sent in one pipeline. Redis runs
   * nothing else while a script runs, so this bounds how long a flush blocks
   * other instances' flushes, lease renewals and health probes. The cost per
   * uid does not depend on the chunk size (docs/scaling.md#flush-measured),
   * so a chunk buys a shorter stall at no cost in throughput. A batch must
   * be retried by a store with the same value, since markers name chunks by
   * their index.
   * It also bounds the candidates one expiry script looks at.
   * @default 500
   */
  flushChunkUids?: number | undefined
  /**
   * Called with what the server promises about durability (docs/scaling.md)
   * whenever that changes: found out at open, after every reconnection (a
   * failover may reach another server) and before confirmations.
   */
  onDurability?: ((status: StoreDurability) => void) | undefined
}

/** Options of {@link RedisStore.open}. */
export interface RedisOpenOptions extends RedisStoreOptions {
  /** ioredis options (TLS, timeouts, Sentinel…), applied over the store's own. @default {} */
  redis?: RedisOptions | undefined
  /**
   * Fail the open when Redis cannot be reached (true), or start disconnected
   * and connect in the background (false: the server's choice, so that a
   * proxy restarted during a Redis outage still serves).
   * @default true
   */
  waitForConnection?: boolean | undefined
}

/** Deltas per flush script unless {@link RedisStoreOptions.flushChunkUids} says otherwise. */
export const FLUSH_CHUNK_UIDS = 500

/** How long one connection attempt may take. */
const CONNECT_TIMEOUT_MS = 5000
/** A command without an answer by then fails (the collector retries it). */
const COMMAND_TIMEOUT_MS = 10_000

/**
 * `redis://` / `rediss://` — one ledger shared by every instance. Each write
 * is a Lua script (atomic in Redis) that restates the merge rules of
 * `src/meter/usage-record.ts`; the contract suite holds it to them. Keys:
 * src/store/redis-keys.ts; scripts: src/store/redis-scripts.ts; the outbox
 * after a seal: src/store/redis-outbox.ts.
 *
 * A flush is one round-trip but not one script: Redis runs nothing else while
 * a script runs, and a collector may flush 100,000 uids at once (seconds of
 * Lua), which would stall every other instance's flushes, the reporter
 * lease's renewals and /health. So the batch goes in chunks of
 * `flushChunkUids` deltas, one script each, all in one pipeline. "Atomic"
 * for a Redis flush therefore means: each chunk is applied whole and at most
 * once, and the batch is retried until every chunk is. Each chunk leaves a
 * marker `{p}:flushed:<batch id>:<chunk index>`; when a flush fails part-way
 * (some chunks ran, then the connection dropped or a reply timed out) the
 * collector sends the same batch with the same id again, the chunks already
 * applied find their markers and return their first result, and the rest
 * run. Other instances may see a batch half-merged meanwhile (a seal may take
 * its first chunks in one window and the rest in the next): every byte is
 * still reported once. The markers of a batch are deleted by the next flush
 * once all of its chunks answered, never earlier; a stopped store's last
 * markers expire (`FLUSH_MARKER_TTL_MS`). See src/store/redis-flusher.ts.
 *
 * A seal is three steps because `render` runs in JS: stage (a script takes
 * every qualified record into `{p}:stage` and schedules the next seal), render,
 * commit (a script writes the reports to the outbox and drops the stage). If
 * render throws, or the commit is refused, a third script puts the stage back
 * and restores the schedule: nothing changed, as the contract asks. See
 * src/store/redis-sealer.ts.
 *
 * Crash between stage and commit: the stage stays. `records()` lists staged
 * records along with the live ones (a uid flushed since then shows twice: its
 * staged cycle and its new one), so every byte stays visible; `outbox()` does
 * not list them yet. The next `seal()` on any instance, due or not, finds the
 * stage, claims it with its own token, renders it with the original sealing
 * time and commits it, instead of taking new records. The token fences the
 * commit: a sealer whose stage was claimed meanwhile commits nothing, so a
 * window is written once, whichever instance believes it holds the reporter
 * lease (a paused reporter whose lease ran out may still try). `summary()`
 * counts live records only: staged ones are being reported.
 *
 * The store owns its client: `close()` quits it.
 */
export class RedisStore implements UsageStore {
  readonly kind = 'redis'
  readonly policy: UsagePolicy
  /** The key prefix (without braces). */
  readonly prefix: string
  /** Grants, sessions and use counts, shared by every instance (src/store/access-redis.ts). */
  readonly access: RedisAccess
  readonly #client: Redis | Cluster
  readonly #keys: RedisKeys
  readonly #flushChunkUids: number
  /** Scripts, closed check and errors (src/store/redis-script-runner.ts). */
  readonly #runner: RedisScriptRunner
  /** Seals are durable before their reports are handed out (src/store/redis-durability.ts). */
  readonly #durability: RedisDurability
  readonly #flusher: RedisFlusher
  readonly #sealer: RedisSealer
  readonly #outbox: RedisOutbox

  /**
   * Connect to `url` (`redis://[user:password@]host[:port][/db]` or
   * `rediss://…` for TLS; `redis+sentinel://…` and `redis+cluster://…`, see
   * src/store/redis-url.ts) and open the store, having asked the server what
   * it promises about durability (`durability`).
   *
   * The client never queues commands while disconnected and never resends
   * one after a lost connection: a command fails at once, the collector keeps
   * its deltas in memory (a flush batch is retried with its id, which Redis
   * applies at most once) and the proxy goes on serving. ioredis reconnects
   * in the background with a growing delay (50 ms more per attempt, capped at
   * 2 s). A command Redis does not answer within `commandTimeout` fails too.
   *
   * With `waitForConnection: false` a Redis that is down at start does not
   * stop the open: the store starts disconnected and works once Redis answers.
   * @throws {StoreError} when the prefix or `flushChunkUids` is invalid, or (`waitForConnection`,
   *   the default) Redis cannot be reached. The message never repeats the URL:
   *   it may hold a password.
   */
  static async open (url: string, policy: UsagePolicy, options: RedisOpenOptions): Promise<RedisStore> {
    // Refuse bad options before a client exists: the constructor's throw would leak it.
    redisKeys(options.prefix)
    chunkUids(options)
    const client = createRedisClient(url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      connectTimeout: CONNECT_TIMEOUT_MS,
      commandTimeout: COMMAND_TIMEOUT_MS,
      ...options.redis
    })
    // Without a listener ioredis prints every reconnect error to stderr. The
    // commands that fail meanwhile reject, and the collector logs those.
    client.on('error', () => {})
    try {
      await client.connect()
    } catch (err) {
      if (options.waitForConnection === false) return new RedisStore(client, policy, options)
      client.disconnect()
      throw new StoreError(`cannot connect to the redis store: ${messageOf(err)}`, { cause: err })
    }
    const store = new RedisStore(client, policy, options)
    // Known before the server starts, for its start-up log; a failure here is
    // the next command's to report.
    await store.checkDurability().catch(() => {})
    return store
  }

  /**
   * What the server promised about durability when last asked (`unknown`
   * before it answered). Asked at open, on every reconnection, at every seal
   * and confirmation, and again in the background when this is read and the
   * last answer is older than 5 s.
   */
  get durability (): StoreDurability {
    return this.#durability.current(5000)
  }

  /** Ask the server again what it promises about durability (see docs/scaling.md). */
  async checkDurability (): Promise<StoreDurability> {
    await this.#runner.run('durability', () => this.#durability.refresh())
    return this.#durability.status
  }

  /** True while the client is connected and ready for commands. */
  get connected (): boolean {
    return this.#client.status === 'ready'
  }

  /** Wrap a client (e.g. a `Cluster`, or one made with Sentinel options). Commands wait for it to connect. */
  constructor (client: Redis | Cluster, policy: UsagePolicy, options: RedisStoreOptions) {
    this.#keys = redisKeys(options.prefix)
    this.#flushChunkUids = chunkUids(options)
    this.prefix = options.prefix
    this.policy = Object.freeze({ ...policy })
    this.#client = client
    this.#runner = new RedisScriptRunner(client)
    this.#durability = new RedisDurability(client, this.#keys, options.onDurability)
    this.#flusher = new RedisFlusher(client, this.#runner, this.#keys, this.policy, this.#flushChunkUids)
    this.#sealer = new RedisSealer(this.#runner, this.#keys, this.policy, this.#durability)
    this.#outbox = new RedisOutbox(client, this.#runner, this.#keys, this.#durability)
    this.access = new RedisAccess(client, this.#runner, this.#keys)
    // Every connection may reach another server (a restart, a failover): ask it again.
    client.on('ready', () => { this.#durability.refresh().catch(() => {}) })
  }

  /**
   * Merge `deltas` in chunks of `flushChunkUids`, all sent in one pipeline
   * (see the class comment). Resolves once every chunk is applied; rejects
   * with the first chunk's error otherwise, some chunks possibly applied:
   * send the same deltas with the same `batchId` again to apply the rest.
   */
  /**
   * With `cursor`, the batch is framed by two scripts in the same pipeline:
   * one records which lines it holds (its id and end), one moves the
   * position once every chunk's marker is there. A crash part-way leaves the
   * position where it was and `logCursor` names the end of the batch, so the
   * reader sends the same batch again (same lines → same deltas, chunks and
   * id, the id being derived from the position, `UsageFlusher`) and the
   * chunks already applied are skipped by their markers.
   */
  async flush (deltas: readonly UsageDelta[], batchId?: string, cursor?: LogCursor): Promise<FlushResult> {
    return await this.#flusher.flush(deltas, batchId, cursor)
  }

  async logCursor (key: string): Promise<CommittedLogCursor> {
    const [position, pendingTo] = await this.#runner.run('log_cursor', () =>
      this.#client.hmget(`${this.#keys.logCursorPrefix}${key}`, 'position', 'pending_to'))
    return { position: Number(position ?? 0), ...(pendingTo == null ? {} : { replayTo: Number(pendingTo) }) }
  }

  async leadership (holder: string, ttlMs: number): Promise<number> {
    const k = this.#keys
    return Number(await this.#runner.script('leadership', 'smLease', [k.lease, k.fence], [holder, Math.max(1, Math.round(ttlMs)), 'hold']))
  }

  async releaseLeadership (holder: string): Promise<void> {
    const k = this.#keys
    await this.#runner.script('release_leadership', 'smLease', [k.lease, k.fence], [holder, 1, 'release'])
  }

  /**
   * Discard expired accumulators in chunks of `flushChunkUids` candidates,
   * one script each, for the reason flushes are chunked: 100,000 uids
   * expiring at once would hold Redis for about a second. Each uid's
   * discard is atomic on its own (expiry needs no window-wide atomicity);
   * the loop goes on while a full chunk discarded something, so it ends
   * even when a chunk's candidates are all kept (within the 1 ms margin).
   */
  async expire (now: number): Promise<ExpireResult> {
    const k = this.#keys
    const discarded: ExpireResult['discarded'] = []
    for (;;) {
      const [candidates, json] = await this.#runner.script('expire', 'smExpire', [k.records, k.pending, k.byBytes, k.meta, k.counters], [
        now, limit(this.policy.accumulatorTimeoutMs), this.#flushChunkUids
      ]) as [number, string]
      const chunk = toDiscarded(JSON.parse(json) as Array<[string, number, number]>)
      discarded.push(...chunk)
      if (candidates < this.#flushChunkUids || chunk.length === 0) return { discarded }
    }
  }

  async seal (request: SealRequest): Promise<SealResult> {
    return await this.#sealer.seal(request)
  }

  async nextSealAt (): Promise<number | undefined> {
    const value = await this.#runner.run('nextSealAt', () => this.#client.hget(this.#keys.meta, 'next_seal_at'))
    return value === null ? undefined : Number(value)
  }

  async outboxHead (): Promise<OutboxEntry | undefined> {
    return await this.#outbox.head()
  }

  async outboxAck (reportId: string, now: number): Promise<boolean> {
    return await this.#outbox.ack(reportId, now)
  }

  async outboxFail (reportId: string, error: string, now: number, detail: FailureDetail = {}): Promise<void> {
    await this.#outbox.fail(reportId, error, now, detail)
  }

  async outboxPark (reportId: string, error: string, now: number, detail: FailureDetail = {}): Promise<boolean> {
    return await this.#outbox.park(reportId, error, now, detail)
  }

  /** Checks the parts against the report (whose uids and bytes never change), then replaces it in one script. */
  async outboxSplit (reportId: string, parts: readonly RenderedReport[], error: string, now: number, detail: FailureDetail = {}): Promise<boolean> {
    return await this.#outbox.split(reportId, parts, error, now, detail)
  }

  async outboxRetry (target: string | { all: true }): Promise<string[]> {
    return await this.#outbox.retry(target)
  }

  async outboxDrop (reportId: string, options: { force?: boolean | undefined } = {}): Promise<OutboxItem | 'not-parked' | 'unknown'> {
    return await this.#outbox.drop(reportId, options.force === true)
  }

  async outboxStats (): Promise<OutboxStats> {
    return await this.#outbox.stats()
  }

  async outboxList (): Promise<OutboxItem[]> {
    return await this.#outbox.list()
  }

  async counters (): Promise<StoreCounters> {
    const stored = await this.#runner.run('counters', () => this.#client.hgetall(this.#keys.counters))
    const counters = emptyCounters()
    const slots = counters as unknown as Record<string, number | string>
    for (const [key, value] of Object.entries(stored)) {
      const slot = slots[key]
      if (typeof slot === 'number') slots[key] = Number(value)
      else if (typeof slot === 'string') slots[key] = value
    }
    return counters
  }

  async summary (top: number): Promise<UsageSummary> {
    const k = this.#keys
    const n = Math.max(0, Math.trunc(top))
    const [totals, flat] = await this.#runner.script('summary', 'smSummary', [k.meta, k.byBytes, k.records], [n]) as [string[], string[]]
    const [qualifiedUids, qualifiedBytes, pendingUids, pendingBytes] = totals.map(Number)
    return {
      qualifiedUids: qualifiedUids ?? 0,
      pendingUids: pendingUids ?? 0,
      qualifiedBytes: qualifiedBytes ?? 0,
      pendingBytes: pendingBytes ?? 0,
      top: toRecords(flat).sort(compareRecords).slice(0, n)
    }
  }

  /** Live records, then staged ones (a seal in progress or interrupted; see the class comment). */
  async records (): Promise<UsageRecord[]> {
    const k = this.#keys
    const [live, staged] = await this.#runner.script('records', 'smRecords', [k.records, k.stage], []) as [string[], string[]]
    return [...toRecords(live), ...toRecords(staged)]
  }

  /** Pending reports in delivery order, then parked ones by seq. */
  async outbox (): Promise<OutboxEntry[]> {
    return await this.#outbox.all()
  }

  async close (): Promise<void> {
    if (this.#runner.closed) return
    this.#runner.close()
    this.#durability.close()
    try {
      await this.#client.quit()
    } catch {
      // Already disconnected (or never connected): nothing to say goodbye to.
      this.#client.disconnect()
    }
  }
}

/** The chunk size of a flush. @throws {StoreError} when it is not a positive integer */
function chunkUids (options: RedisStoreOptions): number {
  const n = options.flushChunkUids ?? FLUSH_CHUNK_UIDS
  if (!Number.isSafeInteger(n) || n < 1) throw new StoreError('flushChunkUids must be a positive integer')
  return n
}
