import { randomUUID } from 'node:crypto'
import type { ChainableCommander, Cluster, Redis, RedisOptions } from 'ioredis'
import { StoreClosedError, StoreError, StreammeterError } from '../errors.ts'
import { CLOCK_BACK_SLACK_MS, checkRendered, compareRecords, emptyCounters } from '../meter/index.ts'
import type {
  ExpireResult, FlushResult, OutboxEntry, OutboxStats, RenderedReport, SealRequest, SealResult,
  StoreCounters, StoreDurability, UsageDelta, UsagePolicy, UsageRecord, UsageStore, UsageSummary
} from '../meter/index.ts'
import { checkSplit } from '../meter/index.ts'
import type { FailureDetail, OutboxItem } from '../meter/index.ts'
import { parseItem } from './redis-outbox-scripts.ts'
import { createRedisClient } from './redis-client.ts'
import { GATE_WAIT_MS, RedisDurability, SEAL_WAIT_MS } from './redis-durability.ts'
import { FLUSH_MARKER_TTL_MS } from './redis-flush-scripts.ts'
import { redisKeys } from './redis-keys.ts'
import type { RedisKeys } from './redis-keys.ts'
import { SCRIPTS } from './redis-scripts.ts'
import type { ScriptName } from './redis-scripts.ts'

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
   * other instances' flushes, lease renewals and health probes: about 15 µs
   * per uid, so 5–13 ms per script of 500. The cost per uid measured the same
   * from 250 to 2000 uids per script (docs/scaling.md), so a chunk buys a
   * shorter stall at no cost in throughput. A batch must be retried by a
   * store with the same value, since markers name chunks by their index.
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

type ScriptCall = (numKeys: number, ...args: Array<string | number>) => Promise<unknown>
/** A script on a pipeline: queues the command, resolves nothing itself (exec() does). */
type QueueScript = (numKeys: number, ...args: Array<string | number>) => unknown

/**
 * A record as the scripts store it (src/store/redis-lua-prelude.ts, `encode`).
 * Redis's cjson writes an empty array as `{}`.
 */
interface RecordJson {
  b: number
  r: number
  ft: Record<string, number>
  ips: string[] | Record<string, never>
  s: string[] | Record<string, never>
  st: number
  la: number
  q: boolean
}

/**
 * `redis://` / `rediss://` — one ledger shared by every instance. Each write
 * is a Lua script (atomic in Redis) that restates the merge rules of
 * `src/meter/usage-record.ts`; the contract suite holds it to them. Keys:
 * src/store/redis-keys.ts; scripts: src/store/redis-scripts.ts.
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
 * markers expire (`FLUSH_MARKER_TTL_MS`).
 *
 * A seal is three steps because `render` runs in JS: stage (a script takes
 * every qualified record into `{p}:stage` and schedules the next seal), render,
 * commit (a script writes the reports to the outbox and drops the stage). If
 * render throws, or the commit is refused, a third script puts the stage back
 * and restores the schedule: nothing changed, as the contract asks.
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
  readonly #client: Redis | Cluster
  readonly #keys: RedisKeys
  readonly #flushChunkUids: number
  /**
   * The last batch whose every chunk answered: nothing retries it, so the next
   * flush of another batch deletes its markers. A batch that failed part-way
   * is never recorded here: its retry needs them.
   */
  #lastBatch: { id: string, markers: string[] } | undefined
  #closed = false
  /** Seals are durable before their reports are handed out (src/store/redis-durability.ts). */
  readonly #durability: RedisDurability

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
    await this.#run('durability', () => this.#durability.refresh())
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
    for (const [name, lua] of Object.entries(SCRIPTS)) client.defineCommand(name, { lua })
    this.#durability = new RedisDurability(client, this.#keys, options.onDurability)
    // Every connection may reach another server (a restart, a failover): ask it again.
    client.on('ready', () => { this.#durability.refresh().catch(() => {}) })
  }

  /**
   * Merge `deltas` in chunks of `flushChunkUids`, all sent in one pipeline
   * (see the class comment). Resolves once every chunk is applied; rejects
   * with the first chunk's error otherwise, some chunks possibly applied:
   * send the same deltas with the same `batchId` again to apply the rest.
   */
  async flush (deltas: readonly UsageDelta[], batchId?: string): Promise<FlushResult> {
    this.#check()
    if (deltas.length === 0) return { uids: 0, created: 0, qualified: 0, discarded: [] }
    const k = this.#keys
    const p = this.policy
    const id = batchId ?? randomUUID()
    const size = this.#flushChunkUids
    const chunks = Math.ceil(deltas.length / size)
    // A repeat of the last batch (same id) must keep its markers.
    const previous = this.#lastBatch !== undefined && this.#lastBatch.id !== id ? this.#lastBatch.markers : []
    const pipeline = this.#client.pipeline() as unknown as Record<ScriptName, QueueScript>
    const markers: string[] = []
    for (let c = 0; c < chunks; c++) {
      const marker = `${k.flushedPrefix}${id}:${c}`
      markers.push(marker)
      const keys = [k.records, k.pending, k.qualified, k.byBytes, k.meta, k.counters, marker]
      // The previous batch's markers are spread over the chunks, so that no script gets them all.
      for (let j = c; j < previous.length; j += chunks) keys.push(previous[j] as string)
      const chunk = JSON.stringify(deltas.slice(c * size, (c + 1) * size).map((d) => [
        d.uid, d.bytes, d.requests, d.fileTypes, d.ips, d.sessions, d.firstSeen, d.lastSeen
      ]))
      // Queued here, sent by exec(): one write, one round-trip for every chunk.
      pipeline.smFlush(keys.length, ...keys,
        limit(p.minBytes), limit(p.accumulatorTimeoutMs), limit(p.maxIps), limit(p.maxSessions), chunk, FLUSH_MARKER_TTL_MS)
    }
    const replies = await this.#run('flush', () => (pipeline as unknown as ChainableCommander).exec())
    // null is exec's answer to a MULTI aborted by WATCH; this pipeline has neither.
    if (replies === null) throw new StoreError('redis store flush failed: no reply to the pipeline')
    const result: FlushResult = { uids: deltas.length, created: 0, qualified: 0, discarded: [] }
    for (const [c, [err, reply]] of replies.entries()) {
      if (err !== null) {
        const where = chunks > 1 ? ` (chunk ${c + 1} of ${chunks})` : ''
        throw new StoreError(`redis store flush failed: ${messageOf(err)}${where}`, { cause: withoutArguments(err) })
      }
      const part = JSON.parse(String(reply)) as { created: number, qualified: number, discarded: Array<[string, number, number]> }
      result.created += part.created
      result.qualified += part.qualified
      for (const d of toDiscarded(part.discarded)) result.discarded.push(d)
    }
    this.#lastBatch = { id, markers }
    return result
  }

  async leadership (holder: string, ttlMs: number): Promise<number> {
    const k = this.#keys
    return Number(await this.#script('leadership', 'smLease', [k.lease, k.fence], [holder, Math.max(1, Math.round(ttlMs)), 'hold']))
  }

  async releaseLeadership (holder: string): Promise<void> {
    const k = this.#keys
    await this.#script('release_leadership', 'smLease', [k.lease, k.fence], [holder, 1, 'release'])
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
      const [candidates, json] = await this.#script('expire', 'smExpire', [k.records, k.pending, k.byBytes, k.meta, k.counters], [
        now, limit(this.policy.accumulatorTimeoutMs), this.#flushChunkUids
      ]) as [number, string]
      const chunk = toDiscarded(JSON.parse(json) as Array<[string, number, number]>)
      discarded.push(...chunk)
      if (candidates < this.#flushChunkUids || chunk.length === 0) return { discarded }
    }
  }

  async seal (request: SealRequest): Promise<SealResult> {
    const k = this.#keys
    const token = randomUUID()
    const [status, sealedAt, next, flat] = await this.#script('seal', 'smStage',
      [k.records, k.qualified, k.byBytes, k.meta, k.stage, k.stageMeta],
      [request.now, request.intervalMs, request.force === true ? '1' : '0', token, CLOCK_BACK_SLACK_MS]) as [string, string, string, string[]]
    const nextSealAt = Number(next)
    if (status !== 'staged') return { sealed: status === 'empty', reports: [], nextSealAt }

    const records = toRecords(flat).sort(compareRecords)
    let rendered: RenderedReport[] = []
    try {
      if (records.length > 0) rendered = checkRendered(records, request.render(records, Number(sealedAt)))
    } catch (err) {
      // The caller's error is the one to see; if the undo fails too, the
      // stage stays and the next seal takes it up.
      await this.#unstage(token).catch(() => {})
      throw err
    }
    let reply: unknown[]
    try {
      reply = await this.#script('seal', 'smCommit',
        [k.stage, k.stageMeta, k.outbox, k.seq, k.meta, k.counters, ...rendered.map((r) => k.reportPrefix + r.reportId)],
        [token, ...rendered.flatMap((r) => [r.reportId, r.body, r.uids, r.bytes])]) as unknown[]
    } catch (err) {
      // The commit may have gone through with its reply lost: the undo is
      // fenced by the token, so it only puts back a stage nobody committed.
      await this.#unstage(token).catch(() => {})
      throw err
    }
    if (reply[0] === 'fenced') return { sealed: false, reports: [], nextSealAt }
    if (reply[0] === 'duplicate') {
      await this.#unstage(token)
      throw new StoreError(`report id ${String(reply[1])} is already in the outbox`)
    }
    // Durable before delivery (docs/scaling.md, "Redis settings"). A wait that
    // fails leaves the reports in the outbox unconfirmed: outboxHead()
    // confirms before handing one out.
    if (rendered.length > 0) await this.#durability.confirm(SEAL_WAIT_MS).catch(() => {})
    const createdAt = Number(reply[1])
    const reports = rendered.map((r, i): OutboxEntry => ({
      seq: Number(reply[i + 2]), reportId: r.reportId, createdAt, body: r.body, uids: r.uids, bytes: r.bytes, attempts: 0
    }))
    return { sealed: true, reports, nextSealAt }
  }

  async nextSealAt (): Promise<number | undefined> {
    const value = await this.#run('nextSealAt', () => this.#client.hget(this.#keys.meta, 'next_seal_at'))
    return value === null ? undefined : Number(value)
  }

  async outboxHead (): Promise<OutboxEntry | undefined> {
    const [head] = await this.#outbox('outboxHead', '0')
    // The delivery gate: a report goes out only once its seal is durable.
    if (head !== undefined) await this.#run('outboxHead', () => this.#durability.gate(head.reportId, GATE_WAIT_MS))
    return head
  }

  async outboxAck (reportId: string, now: number): Promise<boolean> {
    const k = this.#keys
    const reply = await this.#script('outboxAck', 'smAck', [k.outbox, k.reportPrefix + reportId, k.meta, k.counters, k.parked, k.retried], [reportId, now])
    return reply === 1
  }

  async outboxFail (reportId: string, error: string, now: number, detail: FailureDetail = {}): Promise<void> {
    const k = this.#keys
    await this.#script('outboxFail', 'smFail', [k.reportPrefix + reportId, k.counters], [error, now, detail.status ?? '', detail.rejected === true ? '1' : '0'])
  }

  async outboxPark (reportId: string, error: string, now: number, detail: FailureDetail = {}): Promise<boolean> {
    const k = this.#keys
    const reply = await this.#script('outboxPark', 'smPark', [k.outbox, k.parked, k.retried, k.reportPrefix + reportId, k.meta, k.counters],
      [reportId, error, now, detail.status ?? ''])
    return reply === 1
  }

  /** Checks the parts against the report (whose uids and bytes never change), then replaces it in one script. */
  async outboxSplit (reportId: string, parts: readonly RenderedReport[], error: string, now: number, detail: FailureDetail = {}): Promise<boolean> {
    const k = this.#keys
    const [uids, bytes, parked] = await this.#run('outboxSplit', () => this.#client.hmget(k.reportPrefix + reportId, 'uids', 'bytes', 'parked_at'))
    if (uids === null || parked !== null) return false
    checkSplit({ reportId, uids: Number(uids), bytes: Number(bytes) }, parts)
    const reply = await this.#script('outboxSplit', 'smSplit',
      [k.outbox, k.seq, k.retried, k.reportPrefix + reportId, k.meta, k.counters, ...parts.map((p) => k.reportPrefix + p.reportId)],
      [reportId, error, now, detail.status ?? '', ...parts.flatMap((p) => [p.reportId, p.body, p.uids, p.bytes])]) as string[]
    if (reply[0] === 'duplicate') throw new StoreError(`report id ${String(reply[1])} is already in the outbox`)
    return reply[0] === 'split'
  }

  async outboxRetry (target: string | { all: true }): Promise<string[]> {
    // '' tells the script "all": an empty id names no report.
    if (target === '') return []
    const k = this.#keys
    return await this.#script('outboxRetry', 'smRetry', [k.outbox, k.parked, k.retried, k.meta],
      [k.reportPrefix, typeof target === 'string' ? target : '']) as string[]
  }

  async outboxDrop (reportId: string, options: { force?: boolean | undefined } = {}): Promise<OutboxItem | 'not-parked' | 'unknown'> {
    const k = this.#keys
    const reply = await this.#script('outboxDrop', 'smDrop', [k.outbox, k.parked, k.retried, k.reportPrefix + reportId, k.meta, k.counters],
      [reportId, options.force === true ? '1' : '0']) as Array<string | number | null>
    if (reply[0] === 'dropped') return parseItem(reply.slice(1))
    return reply[0] === 'not-parked' ? 'not-parked' : 'unknown'
  }

  async outboxStats (): Promise<OutboxStats> {
    const k = this.#keys
    const [pending, bytes, oldest, parked, parkedBytes] = await this.#script('outboxStats', 'smOutboxStats', [k.outbox, k.meta, k.parked, k.retried],
      [k.reportPrefix]) as [number, string, string, number, string]
    return {
      pending: Number(pending),
      pendingBytes: Number(bytes),
      oldestCreatedAt: oldest === '' ? undefined : Number(oldest),
      parked: Number(parked),
      parkedBytes: Number(parkedBytes)
    }
  }

  async outboxList (): Promise<OutboxItem[]> {
    const k = this.#keys
    const reply = await this.#script('outboxList', 'smOutboxList', [k.outbox, k.parked], [k.reportPrefix]) as Array<Array<string | number | null>>
    return reply.map(parseItem)
  }

  async counters (): Promise<StoreCounters> {
    const stored = await this.#run('counters', () => this.#client.hgetall(this.#keys.counters))
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
    const [totals, flat] = await this.#script('summary', 'smSummary', [k.meta, k.byBytes, k.records], [n]) as [string[], string[]]
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
    const [live, staged] = await this.#script('records', 'smRecords', [k.records, k.stage], []) as [string[], string[]]
    return [...toRecords(live), ...toRecords(staged)]
  }

  /** Pending reports in delivery order, then parked ones by seq. */
  async outbox (): Promise<OutboxEntry[]> {
    const k = this.#keys
    const [pending, parked] = await this.#script('outbox', 'smOutboxAll', [k.outbox, k.parked], [k.reportPrefix]) as [string[][], string[][]]
    return [...pending, ...parked].map(toEntry)
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#durability.close()
    try {
      await this.#client.quit()
    } catch {
      // Already disconnected (or never connected): nothing to say goodbye to.
      this.#client.disconnect()
    }
  }

  async #outbox (operation: string, last: '0'): Promise<OutboxEntry[]> {
    const reply = await this.#script(operation, 'smOutbox', [this.#keys.outbox], [this.#keys.reportPrefix, last]) as string[][]
    return reply.map(toEntry)
  }

  async #unstage (token: string): Promise<void> {
    const k = this.#keys
    await this.#script('seal', 'smUnstage',
      [k.records, k.pending, k.qualified, k.byBytes, k.meta, k.counters, k.stage, k.stageMeta],
      [token, limit(this.policy.maxIps), limit(this.policy.maxSessions)])
  }

  /** Run one script (EVALSHA; ioredis falls back to EVAL once when Redis does not know it yet). */
  #script (operation: string, name: ScriptName, keys: string[], args: Array<string | number>): Promise<unknown> {
    return this.#run(operation, () => {
      const call = (this.#client as unknown as Record<ScriptName, ScriptCall>)[name]
      return call.call(this.#client, keys.length, ...keys, ...args)
    })
  }

  /** Closed check; failures of Redis or the connection become StoreError with the cause. */
  async #run<T> (operation: string, fn: () => Promise<T>): Promise<T> {
    this.#check()
    try {
      return await fn()
    } catch (err) {
      if (err instanceof StreammeterError) throw err
      throw new StoreError(`redis store ${operation} failed: ${messageOf(err)}`, { cause: withoutArguments(err) })
    }
  }

  #check (): void {
    if (this.#closed) throw new StoreClosedError()
  }
}

/** The chunk size of a flush. @throws {StoreError} when it is not a positive integer */
function chunkUids (options: RedisStoreOptions): number {
  const n = options.flushChunkUids ?? FLUSH_CHUNK_UIDS
  if (!Number.isSafeInteger(n) || n < 1) throw new StoreError('flushChunkUids must be a positive integer')
  return n
}

/** JSON cannot carry Infinity; a policy without a bound gets one no count reaches. */
function limit (n: number): number {
  return Number.isFinite(n) ? n : Number.MAX_SAFE_INTEGER
}

function toDiscarded (list: Array<[string, number, number]>): FlushResult['discarded'] {
  return list.map(([uid, bytes, startTime]) => ({ uid, bytes, startTime }))
}

/** [uid, record JSON, uid, record JSON, …] → records. */
function toRecords (flat: readonly string[]): UsageRecord[] {
  const out: UsageRecord[] = []
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const r = JSON.parse(flat[i + 1] as string) as RecordJson
    out.push({
      uid: flat[i] as string,
      bytes: r.b,
      requests: r.r,
      fileTypes: r.ft,
      ips: Array.isArray(r.ips) ? r.ips : [],
      sessions: Array.isArray(r.s) ? r.s : [],
      startTime: r.st,
      lastActivity: r.la,
      qualified: r.q
    })
  }
  return out
}

/** An outbox hash (HGETALL, flat) → entry; lastError/lastAttemptAt are absent until a failure, as in MemoryStore. */
function toEntry (flat: readonly string[]): OutboxEntry {
  const h = new Map<string, string>()
  for (let i = 0; i + 1 < flat.length; i += 2) h.set(flat[i] as string, flat[i + 1] as string)
  const entry: OutboxEntry = {
    seq: Number(h.get('seq')),
    reportId: h.get('report_id') ?? '',
    createdAt: Number(h.get('created_at')),
    body: h.get('body') ?? '',
    uids: Number(h.get('uids')),
    bytes: Number(h.get('bytes')),
    attempts: Number(h.get('attempts') ?? 0)
  }
  const lastError = h.get('last_error')
  const lastAttempt = h.get('last_attempt_at')
  if (lastError !== undefined) entry.lastError = lastError
  if (lastAttempt !== undefined) entry.lastAttemptAt = Number(lastAttempt)
  // Since refused reports are parked (src/store/redis-outbox-scripts.ts).
  const lastStatus = h.get('last_status')
  const rejections = Number(h.get('rejections') ?? 0)
  const parkedAt = h.get('parked_at')
  if (lastStatus !== undefined) entry.lastStatus = Number(lastStatus)
  if (rejections > 0) entry.rejections = rejections
  if (parkedAt !== undefined) entry.parkedAt = Number(parkedAt)
  return entry
}

/**
 * ioredis puts the failed command on its errors (`err.command.args`): for a
 * flush, the script and a batch of uids and client IPs, megabytes that a
 * logger would print whole. The cause keeps the command's name only.
 */
function withoutArguments (err: unknown): unknown {
  if (err instanceof Error && 'command' in err && typeof err.command === 'object' && err.command !== null && 'name' in err.command) {
    err.command = { name: err.command.name }
  }
  return err
}

function messageOf (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
