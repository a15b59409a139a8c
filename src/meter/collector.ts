import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { CollectorStateError } from '../errors.ts'
import type { Clock, IdSource } from './clock.ts'
import { randomIds, systemClock } from './clock.ts'
import { DeltaMap } from './delta-map.ts'
import { channels } from './diagnostics.ts'
import { fileTypeIndex } from './file-type.ts'
import type { MeterLogger } from './logger.ts'
import { silentLogger } from './logger.ts'
import type { MeterOptions } from './options.ts'
import { resolveMeterOptions } from './options.ts'
import { renderReports } from './report-builder.ts'
import type { ReportContext } from './report-builder.ts'
import type { ReportTransport } from './report-transport.ts'
import { HttpReportTransport } from './report-transport.ts'
import type { DeliveryRun } from './reporter.ts'
import { Reporter } from './reporter.ts'
import { ReporterLease } from './reporter-lease.ts'
import { buildTrafficStatus } from './traffic-status.ts'
import type { InstanceCounters, TrafficStatus } from './traffic-status.ts'
import type { DiscardedUsage, StoreCounters, TrafficEvent, UsageDelta, UsagePolicy } from './types.ts'
import type { FlushResult, OutboxStats, SealResult, UsageStore, UsageSummary } from './usage-store.ts'
import { emptyCounters } from './usage-store.ts'

/** A wall clock that moved this much more (or less) than the monotonic one between ticks is logged, in ms. */
const CLOCK_JUMP_WARN_MS = 5000

/** The shared figures `status()` reads from the store. */
interface StoreView {
  nextSealAt: number | undefined
  counters: StoreCounters
  outbox: OutboxStats
  summary: UsageSummary
}

/** Life of a collector; changed only through one setter. */
export type CollectorState = 'idle' | 'running' | 'closing' | 'closed'

/** What a collector is wired to. */
export interface CollectorDeps {
  /** Where usage and the outbox live. Its policy must match the options. The caller closes it. */
  store: UsageStore
  /** @default systemClock */
  clock?: Clock | undefined
  /** Report and window ids. @default crypto.randomUUID */
  newId?: IdSource | undefined
  /** How reports are sent. @default HTTP POST to `reportUrl` (none without a URL: reports wait in the outbox) */
  transport?: ReportTransport | undefined
  /** Retry jitter. @default Math.random */
  random?: (() => number) | undefined
  /** @default silent */
  logger?: MeterLogger | undefined
}

/** The usage policy the options imply; a store must be built with exactly this. */
export function policyOf (options: Readonly<MeterOptions>): UsagePolicy {
  return {
    minBytes: options.minBytes,
    accumulatorTimeoutMs: Math.round(options.accumulatorTimeout * 1000),
    maxIps: options.maxIps,
    maxSessions: options.maxSessions
  }
}

/**
 * The traffic collector (DESIGN §2). `record()` is the hot path: O(1), no I/O,
 * no await. Every `flushInterval` the in-process deltas go to the store in one
 * batch; every `reportInterval` the window is sealed into the store's outbox,
 * from which the reporter delivers.
 *
 * Order of `close()`: flush → seal → deliver once within the grace. Draining
 * the server's streams comes before, closing the store after (the caller's).
 */
export class TrafficCollector {
  readonly options: Readonly<MeterOptions>
  readonly #store: UsageStore
  readonly #clock: Clock
  readonly #logger: MeterLogger
  readonly #ctx: ReportContext
  readonly #transport: ReportTransport | undefined
  readonly #ownsTransport: boolean
  readonly #reporter: Reporter | undefined
  readonly #deltas: DeltaMap
  #state: CollectorState = 'idle'
  #ops: Promise<unknown> = Promise.resolve()
  #tickTimer: NodeJS.Timeout | undefined
  #earlyFlushQueued = false
  #finalFlushed = false
  #closed: Promise<void> | undefined
  #unflushedBytes = 0
  readonly #memoryMaxUids: number
  /** flushMaxUids, but never above memoryMaxUids: a healthy store never makes the cap drop usage. */
  readonly #earlyFlushUids: number
  /** False from a failed flush until one succeeds: state changes are logged, not every failure. */
  #storeAvailable = true
  /** True from the first dropped event until the next successful flush (one log line per episode). */
  #dropping = false
  /** The store's part of the last `status()` that could read it, shown while it cannot. */
  #lastStoreView: StoreView | undefined
  readonly #lease: ReporterLease
  readonly #beforeFlush: Array<() => void> = []
  /** Wall and monotonic time of the last tick, to notice the wall clock jumping. */
  #lastTick: { wall: number, mono: number } | undefined
  /** A batch whose flush failed, kept to be sent again with the same id. */
  #heldBatch: { id: string, bytes: number, deltas: UsageDelta[] } | undefined
  readonly #counters: InstanceCounters = {
    events_recorded: 0,
    bytes_recorded: 0,
    events_ignored: 0,
    bytes_after_close: 0,
    events_dropped: 0,
    bytes_dropped: 0,
    flushes: 0,
    flush_failures: 0,
    early_flushes: 0,
    delivery_attempts: 0,
    reports_delivered_here: 0
  }

  constructor (options: Partial<MeterOptions>, deps: CollectorDeps) {
    this.options = resolveMeterOptions(options)
    const o = this.options
    const policy = policyOf(o)
    const sp = deps.store.policy
    if (sp.minBytes !== policy.minBytes || sp.accumulatorTimeoutMs !== policy.accumulatorTimeoutMs ||
      sp.maxIps !== policy.maxIps || sp.maxSessions !== policy.maxSessions) {
      throw new RangeError('the store was opened with a different usage policy than the collector options')
    }
    this.#store = deps.store
    this.#memoryMaxUids = o.memoryMaxUids
    this.#earlyFlushUids = Math.min(o.flushMaxUids, o.memoryMaxUids)
    this.#clock = deps.clock ?? systemClock
    this.#logger = deps.logger ?? silentLogger
    // TTL: three ticks, at least 2 s, so a live reporter renews it in time.
    this.#lease = new ReporterLease(deps.store, `${o.workerId}/${randomUUID()}`, Math.max(2000, Math.round(o.flushInterval * 3000)), this.#logger)
    this.#deltas = new DeltaMap(o.maxIps, o.maxSessions)
    this.#ctx = {
      workerId: o.workerId,
      reportInterval: o.reportInterval,
      minBytes: o.minBytes,
      maxUidsPerReport: o.reportMaxUids,
      maxBytesPerReport: o.reportMaxBytes,
      newId: deps.newId ?? randomIds
    }
    this.#ownsTransport = deps.transport === undefined
    this.#transport = deps.transport ??
      (o.reportUrl !== undefined ? new HttpReportTransport({ url: o.reportUrl, apiKey: o.apiKey, timeout: o.reportTimeout }) : undefined)
    this.#reporter = this.#transport === undefined
      ? undefined
      : new Reporter({
        store: this.#store,
        transport: this.#transport,
        clock: this.#clock,
        logger: this.#logger,
        retryBase: o.retryBase,
        retryCap: o.retryCap,
        maxRejections: o.reportMaxRejections,
        newId: this.#ctx.newId,
        pollMs: Math.max(50, Math.round(o.flushInterval * 1000)),
        random: deps.random,
        canDeliver: () => this.#lease.held
      })
  }

  /** `idle` → `running` → `closing` → `closed`. */
  get state (): CollectorState {
    return this.#state
  }

  /** The store usage goes to. */
  get store (): UsageStore {
    return this.#store
  }

  /**
   * Record one finished response. The hot path: O(1), memory only, never
   * throws for bad input (it is counted in `events_ignored` instead).
   */
  record (event: TrafficEvent): void {
    const bytes = event.bytes
    const uid = event.uid
    if (!(bytes > 0) || !Number.isSafeInteger(bytes) || typeof uid !== 'string' || uid.length === 0) {
      this.#counters.events_ignored++
      return
    }
    if (this.#finalFlushed) {
      this.#counters.bytes_after_close += bytes
      return
    }
    // Bounded memory while the store is unavailable (DESIGN §2): known uids
    // keep counting in their slots, a new uid past the cap is dropped and
    // counted. Healthy, the early flush below keeps the map far smaller.
    if (this.#deltas.size >= this.#memoryMaxUids && !this.#deltas.has(uid)) {
      this.#drop(event)
      return
    }
    const time = event.time ?? this.#clock.now()
    this.#deltas.add(uid, bytes, fileTypeIndex(event.fileType), event.ip || undefined, event.sessionId || undefined, time, event.requests === 0 ? 0 : 1)
    this.#counters.events_recorded++
    this.#counters.bytes_recorded += bytes
    this.#unflushedBytes += bytes
    // While the store is failing, flushes wait for the next tick: an early
    // flush per event would hammer a store that is down.
    if (this.#deltas.size >= this.#earlyFlushUids && !this.#earlyFlushQueued && this.#heldBatch === undefined && this.#state === 'running') {
      this.#earlyFlushQueued = true
      this.#counters.early_flushes++
      setImmediate(() => {
        this.#earlyFlushQueued = false
        this.flush().catch((err: unknown) => this.#logger.error({ err }, 'early flush failed'))
      })
    }
    if (channels.traffic.hasSubscribers) channels.traffic.publish(event)
  }

  /**
   * Call `hook` synchronously at the start of every flush, just before the
   * in-process deltas are taken: a source of usage that is still growing
   * (a long response's bytes so far) records it there, so that it reaches
   * the store within one flush interval.
   */
  beforeFlush (hook: () => void): void {
    this.#beforeFlush.push(hook)
  }

  /** Start the flush/seal timer and the delivery loop. */
  start (): void {
    if (this.#state !== 'idle') throw new CollectorStateError(`cannot start a collector that is ${this.#state}`)
    this.#setState('running')
    if (this.#reporter === undefined) {
      this.#logger.warn({}, 'TRAFFIC_REPORT_URL is not set: reports are kept in the outbox until a URL is configured')
    } else {
      this.#reporter.start()
    }
    this.#scheduleTick()
  }

  /** Send the in-process deltas to the store as one batch. On failure the batch is kept and sent again, same id, first. */
  flush (): Promise<FlushResult | undefined> {
    return this.#serial(() => this.#flushNow())
  }

  /** Discard expired sub-threshold cycles now. */
  expire (): Promise<DiscardedUsage[]> {
    return this.#serial(async () => {
      const { discarded } = await this.#store.expire(this.#clock.now())
      this.#publishDiscards(discarded)
      return discarded
    })
  }

  /** Flush, then seal the window if it is due (or always, with `force`). */
  seal (options: { force?: boolean } = {}): Promise<SealResult> {
    return this.#serial(async () => {
      await this.#flushNow()
      return await this.#sealNow(options.force === true)
    })
  }

  /** One timer step: flush, expire, seal when due. */
  async tick (): Promise<void> {
    this.#watchClock()
    try {
      await this.flush()
    } catch {
      // Logged by #flushNow when the store becomes unavailable; the deltas
      // wait in memory and go with the next tick's flush.
    }
    try {
      // Expiry and seals are the reporter's job: with a shared store one
      // instance at a time does them for all (DESIGN §2, thresholds are global).
      if (!await this.#lease.hold()) return
      await this.expire()
      await this.#serial(() => this.#sealNow(false))
    } catch (err) {
      this.#logger.warn({ err }, 'expiry or seal failed; will retry on the next tick')
    }
  }

  /** True while this instance is the reporter (always, with a store that has no lease). */
  get isReporter (): boolean {
    return this.#lease.held
  }

  /** Try each pending report once, in order, until one fails. Resolves `{ delivered: 0 }` without a transport. */
  async deliverPending (signal?: AbortSignal): Promise<DeliveryRun> {
    if (this.#reporter === undefined) return { delivered: 0, failed: false }
    return await this.#reporter.deliverPending(signal)
  }

  /** The `/traffic` document. */
  async status (top = 10): Promise<TrafficStatus> {
    let view: StoreView
    let storeError: string | null = null
    try {
      const [nextSealAt, counters, outbox, summary] = await Promise.all([
        this.#store.nextSealAt(), this.#store.counters(), this.#store.outboxStats(), this.#store.summary(top)
      ])
      view = { nextSealAt, counters, outbox, summary }
      this.#lastStoreView = view
    } catch (err) {
      // The store is down (a Redis outage): this instance's own figures are
      // still worth showing, with the shared ones as last seen.
      storeError = err instanceof Error ? err.message : String(err)
      view = this.#lastStoreView ?? {
        nextSealAt: undefined,
        counters: emptyCounters(),
        outbox: { pending: 0, pendingBytes: 0, oldestCreatedAt: undefined, parked: 0, parkedBytes: 0 },
        summary: { qualifiedUids: 0, pendingUids: 0, qualifiedBytes: 0, pendingBytes: 0, top: [] }
      }
    }
    return buildTrafficStatus({
      options: this.options,
      state: this.#state,
      storeKind: this.#store.kind,
      storeError,
      now: this.#clock.now(),
      ...view,
      instance: {
        ...this.#counters,
        delivery_attempts: this.#reporter?.attempts ?? 0,
        reports_delivered_here: this.#reporter?.delivered ?? 0
      },
      unflushedUids: this.#deltas.size + (this.#heldBatch?.deltas.length ?? 0),
      unflushedBytes: this.#bytesInMemory(),
      isReporter: this.#lease.held
    })
  }

  /**
   * Graceful stop: flush, seal a final window, try delivery once within
   * `grace` seconds. Reports not delivered stay in the outbox for the next
   * start. Idempotent: a second call returns the first call's promise.
   */
  close (options: { grace?: number } = {}): Promise<void> {
    this.#closed ??= this.#close(options.grace ?? 30)
    return this.#closed
  }

  async #close (graceSeconds: number): Promise<void> {
    // Real time, not the injected clock: the grace bounds real waits (the
    // pauses below, the reporter's attempt in flight, the last delivery
    // pass), which the clock does not schedule. Read on a clock that stands
    // still, a grace over the longest pause (2 s) would never run out while
    // the store stays down.
    const deadline = Date.now() + graceSeconds * 1000
    this.#setState('closing')
    clearTimeout(this.#tickTimer)
    try {
      await this.#serial(async () => {
        // Loop until empty: events may land while a flush awaits the store.
        // The check and the flag are one synchronous step, so no event slips
        // between the last flush and the flag.
        // A store that is briefly down (Redis restarting) gets until the
        // grace's end: retries with a growing pause, then the loss is counted.
        let pause = 100
        while (this.#deltas.size > 0 || this.#heldBatch !== undefined) {
          try {
            await this.#flushNow()
          } catch (err) {
            if (Date.now() + pause >= deadline) throw err
            await sleep(pause)
            pause = Math.min(pause * 2, 2000)
          }
        }
        this.#finalFlushed = true
        // Only the reporter seals; another instance's flushed bytes are
        // sealed by the reporter in its next window.
        if (await this.#lease.hold()) await this.#sealNow(true)
      })
    } catch (err) {
      this.#finalFlushed = true
      const lost = this.#bytesInMemory()
      this.#counters.bytes_after_close += lost
      this.#logger.error({ err, unflushedBytes: lost }, 'final flush or seal failed')
    }
    if (this.#reporter !== undefined) {
      await this.#reporter.stop(deadline)
      const remaining = deadline - Date.now()
      if (remaining > 0 && this.#lease.held) {
        try {
          const run = await this.#reporter.deliverPending(AbortSignal.timeout(remaining))
          this.#logger.info({ delivered: run.delivered, failed: run.failed }, 'final delivery pass done')
        } catch (err) {
          this.#logger.error({ err }, 'final delivery pass failed')
        }
      }
    }
    await this.#lease.release()
    if (this.#ownsTransport) await this.#transport?.close().catch(() => {})
    this.#setState('closed')
  }

  /**
   * Log a jump of the wall clock (against the monotonic one) between two
   * ticks: it explains an early seal (forward) or one that seals at once
   * (back: src/meter/seal-schedule.ts), and sub-threshold cycles that expire
   * early (forward) or late (back), since expiry follows the wall clock.
   */
  #watchClock (): void {
    const wall = this.#clock.now()
    // Real elapsed time, the yardstick the injected clock is held against:
    // read from that clock itself, no jump would ever show.
    const mono = performance.now()
    const last = this.#lastTick
    this.#lastTick = { wall, mono }
    if (last === undefined) return
    const jump = (wall - last.wall) - (mono - last.mono)
    if (Math.abs(jump) > CLOCK_JUMP_WARN_MS) {
      this.#logger.warn({ jumpSeconds: Math.round(jump / 1000) },
        'the wall clock jumped: a window may seal early, and sub-threshold usage may expire early (forward) or late (back)')
    }
  }

  #setState (state: CollectorState): void {
    this.#state = state
  }

  #scheduleTick (): void {
    this.#tickTimer = setTimeout(() => {
      this.tick().finally(() => {
        if (this.#state === 'running') this.#scheduleTick()
      }).catch(() => {})
    }, Math.max(1, Math.round(this.options.flushInterval * 1000)))
    this.#tickTimer.unref()
  }

  /** Run store operations one after another: a seal never overtakes the flush before it. */
  #serial<T> (fn: () => Promise<T>): Promise<T> {
    const next = this.#ops.then(fn, fn)
    this.#ops = next.catch(() => {})
    return next
  }

  /**
   * Send the in-process deltas as one batch with a fresh batch id. A batch
   * whose flush failed is kept as it is and sent again, with the same id,
   * before anything newer: a store whose failure is ambiguous (Redis: the
   * script ran, the answer was lost) applies a batch id at most once, so a
   * retry can never count bytes twice. New events meanwhile wait in the map.
   */
  async #flushNow (): Promise<FlushResult | undefined> {
    const held = this.#heldBatch
    if (held !== undefined) {
      let result: FlushResult
      try {
        result = await this.#store.flush(held.deltas, held.id)
      } catch (err) {
        this.#flushFailed(err)
        throw err
      }
      this.#heldBatch = undefined
      this.#afterFlush(result)
    }
    if (!this.#finalFlushed) {
      for (const hook of this.#beforeFlush) {
        try {
          hook()
        } catch (err) {
          this.#logger.error({ err }, 'a flush hook failed')
        }
      }
    }
    if (this.#deltas.size === 0) return undefined
    const batch = { id: randomUUID(), bytes: this.#unflushedBytes, deltas: this.#deltas.drain() }
    this.#unflushedBytes = 0
    try {
      const result = await this.#store.flush(batch.deltas, batch.id)
      this.#afterFlush(result)
      return result
    } catch (err) {
      this.#heldBatch = batch
      this.#flushFailed(err)
      throw err
    }
  }

  #flushFailed (err: unknown): void {
    this.#counters.flush_failures++
    if (!this.#storeAvailable) return
    this.#storeAvailable = false
    this.#logger.warn({ err, unflushedBytes: this.#bytesInMemory() },
      'store unavailable: usage is kept in memory and flushed when it answers again')
  }

  #drop (event: TrafficEvent): void {
    this.#counters.events_dropped++
    this.#counters.bytes_dropped += event.bytes
    if (!this.#dropping) {
      this.#dropping = true
      this.#logger.error({ memoryMaxUids: this.#memoryMaxUids },
        'memory cap reached: usage of new uids is dropped until the store takes the waiting usage (counted in bytes_dropped)')
    }
    if (channels.drop.hasSubscribers) channels.drop.publish(event)
  }

  /** Bytes recorded here and not yet in the store: the map plus a held batch. */
  #bytesInMemory (): number {
    return this.#unflushedBytes + (this.#heldBatch?.bytes ?? 0)
  }

  #afterFlush (result: FlushResult): void {
    this.#counters.flushes++
    this.#dropping = false
    if (!this.#storeAvailable) {
      this.#storeAvailable = true
      this.#logger.info({ flushFailures: this.#counters.flush_failures }, 'store available again: usage kept in memory is flushed')
    }
    this.#publishDiscards(result.discarded)
  }

  async #sealNow (force: boolean): Promise<SealResult> {
    const result = await this.#store.seal({
      now: this.#clock.now(),
      intervalMs: Math.round(this.options.reportInterval * 1000),
      force,
      render: (records, sealedAt) => renderReports(records, sealedAt, this.#ctx)
    })
    if (result.reports.length > 0) {
      this.#logger.info({ reports: result.reports.length, uids: sum(result.reports, 'uids'), bytes: sum(result.reports, 'bytes') }, 'window sealed')
      if (channels.seal.hasSubscribers) {
        channels.seal.publish({
          sealedAt: result.reports[0]?.createdAt,
          reports: result.reports.map((r) => ({ reportId: r.reportId, uids: r.uids, bytes: r.bytes }))
        })
      }
      this.#reporter?.notify()
    }
    return result
  }

  #publishDiscards (discarded: readonly DiscardedUsage[]): void {
    if (discarded.length === 0) return
    this.#logger.debug({ uids: discarded.length, bytes: sum(discarded, 'bytes') }, 'sub-threshold usage expired')
    if (channels.discard.hasSubscribers) for (const d of discarded) channels.discard.publish(d)
  }
}

function sum<K extends string> (items: ReadonlyArray<Record<K, number>>, key: K): number {
  let total = 0
  for (const item of items) total += item[key]
  return total
}
