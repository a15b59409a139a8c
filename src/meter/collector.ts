import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { CollectorStateError } from '../errors.ts'
import type { Clock, IdSource } from './clock.ts'
import { randomIds, systemClock } from './clock.ts'
import { ClockWatch } from './clock-watch.ts'
import { channels, publishDiscards } from './diagnostics.ts'
import { fileTypeIndex } from './file-type.ts'
import { FlushScheduler } from './flush-scheduler.ts'
import type { MeterLogger } from './logger.ts'
import { silentLogger } from './logger.ts'
import type { MeterOptions } from './options.ts'
import { resolveMeterOptions } from './options.ts'
import type { ReportTransport } from './report-transport.ts'
import { HttpReportTransport } from './report-transport.ts'
import type { DeliveryRun } from './reporter.ts'
import { Reporter } from './reporter.ts'
import { ReporterLease } from './reporter-lease.ts'
import { StoreViewReader } from './store-view.ts'
import { buildTrafficStatus, emptyInstanceCounters } from './traffic-status.ts'
import type { TrafficStatus } from './traffic-status.ts'
import type { DiscardedUsage, TrafficEvent } from './types.ts'
import { UsageBuffer } from './usage-buffer.ts'
import { UsageFlusher } from './usage-flusher.ts'
import { checkStorePolicy } from './usage-policy.ts'
import type { FlushResult, LogCursor, SealResult, UsageStore } from './usage-store.ts'
import { WindowSealer } from './window-sealer.ts'

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

/**
 * The traffic collector (docs/metering.md). `record()` is the hot path: O(1),
 * no I/O, no await. Every `flushInterval` the in-process deltas go to the
 * store in one batch; every `reportInterval` the window is sealed into the
 * store's outbox, from which the reporter delivers.
 *
 * Order of `close()`: flush → seal → deliver once within the grace. Draining
 * the server's streams comes before, closing the store after (the caller's).
 */
export class TrafficCollector {
  readonly options: Readonly<MeterOptions>
  readonly #store: UsageStore
  readonly #clock: Clock
  readonly #logger: MeterLogger
  readonly #transport: ReportTransport | undefined
  readonly #ownsTransport: boolean
  readonly #reporter: Reporter | undefined
  readonly #buffer: UsageBuffer
  readonly #flusher: UsageFlusher
  readonly #scheduler: FlushScheduler
  readonly #clockWatch: ClockWatch
  readonly #storeView: StoreViewReader
  readonly #sealer: WindowSealer
  #state: CollectorState = 'idle'
  #ops: Promise<unknown> = Promise.resolve()
  #finalFlushed = false
  #closed: Promise<void> | undefined
  /** flushMaxUids, but never above memoryMaxUids: a healthy store never makes the cap drop usage. */
  readonly #earlyFlushUids: number
  readonly #lease: ReporterLease
  readonly #counters = emptyInstanceCounters()

  constructor (options: Partial<MeterOptions>, deps: CollectorDeps) {
    this.options = resolveMeterOptions(options)
    const o = this.options
    checkStorePolicy(deps.store, o)
    this.#store = deps.store
    this.#earlyFlushUids = Math.min(o.flushMaxUids, o.memoryMaxUids)
    this.#clock = deps.clock ?? systemClock
    this.#logger = deps.logger ?? silentLogger
    // TTL: three ticks, at least 2 s, so a live reporter renews it in time.
    this.#lease = new ReporterLease(deps.store, `${o.workerId}/${randomUUID()}`, Math.max(2000, Math.round(o.flushInterval * 3000)), this.#logger)
    this.#buffer = new UsageBuffer(o.memoryMaxUids, o.maxIps, o.maxSessions)
    this.#flusher = new UsageFlusher({
      store: this.#store,
      buffer: this.#buffer,
      counters: this.#counters,
      logger: this.#logger,
      hooksClosed: () => this.#finalFlushed
    })
    this.#scheduler = new FlushScheduler({
      intervalMs: Math.max(1, Math.round(o.flushInterval * 1000)),
      tick: () => this.tick(),
      flush: () => this.flush(),
      running: () => this.#state === 'running',
      logger: this.#logger
    })
    this.#clockWatch = new ClockWatch(this.#clock, this.#logger)
    this.#storeView = new StoreViewReader(this.#store)
    const newId = deps.newId ?? randomIds
    this.#sealer = new WindowSealer({
      store: this.#store,
      clock: this.#clock,
      logger: this.#logger,
      options: o,
      newId,
      onReports: () => this.#reporter?.notify()
    })
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
        newId,
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
    // Bounded memory while the store is unavailable (docs/metering.md, "Store
    // outages"): known uids keep counting in their slots, a new uid past the
    // cap is dropped and counted. Healthy, the early flush below keeps the
    // map far smaller.
    const buffer = this.#buffer
    if (!buffer.accepts(uid)) {
      this.#flusher.drop(event)
      return
    }
    const time = event.time ?? this.#clock.now()
    buffer.add(uid, bytes, fileTypeIndex(event.fileType), event.ip || undefined, event.sessionId || undefined, time, event.requests === 0 ? 0 : 1)
    this.#counters.events_recorded++
    this.#counters.bytes_recorded += bytes
    // While the store is failing, flushes wait for the next tick: an early
    // flush per event would hammer a store that is down.
    if (buffer.uids >= this.#earlyFlushUids && buffer.held === undefined && this.#state === 'running' && this.#scheduler.flushSoon()) {
      this.#counters.early_flushes++
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
    this.#flusher.addHook(hook)
  }

  /**
   * Say that everything recorded so far comes from the log `cursor.key` up
   * to `cursor.position` (a byte offset): the next flush commits that
   * position with the usage (`UsageStore.flush`), so that a reader resuming
   * from `UsageStore.logCursor` neither loses nor repeats a line. One log per
   * collector; call it where the usage is recorded (a `beforeFlush` hook),
   * and record nothing else into this collector.
   */
  logPosition (cursor: LogCursor): void {
    this.#flusher.setCursor(cursor)
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
    this.#scheduler.start()
  }

  /** Send the in-process deltas to the store as one batch. On failure the batch is kept and sent again, same id, first. */
  flush (): Promise<FlushResult | undefined> {
    return this.#serial(() => this.#flusher.flush())
  }

  /** Discard expired sub-threshold cycles now. */
  expire (): Promise<DiscardedUsage[]> {
    return this.#serial(async () => {
      const { discarded } = await this.#store.expire(this.#clock.now())
      publishDiscards(discarded, this.#logger)
      return discarded
    })
  }

  /** Flush, then seal the window if it is due (or always, with `force`). */
  seal (options: { force?: boolean } = {}): Promise<SealResult> {
    return this.#serial(async () => {
      await this.#flusher.flush()
      return await this.#sealer.seal(options.force === true)
    })
  }

  /** One timer step: flush, expire, seal when due. */
  async tick (): Promise<void> {
    this.#clockWatch.check()
    try {
      await this.flush()
    } catch {
      // Logged by the flusher when the store becomes unavailable; the deltas
      // wait in memory and go with the next tick's flush.
    }
    try {
      // Expiry and seals are the reporter's job: with a shared store one
      // instance at a time does them for all, thresholds being global
      // (docs/architecture.md, "One reporter at a time").
      if (!await this.#lease.hold()) return
      await this.expire()
      await this.#serial(() => this.#sealer.seal(false))
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
    const { view, error: storeError } = await this.#storeView.read(top)
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
      unflushedUids: this.#buffer.unflushedUids,
      unflushedBytes: this.#buffer.bytes,
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
    this.#scheduler.stop()
    try {
      await this.#serial(async () => {
        // Loop until empty: events may land while a flush awaits the store.
        // The check and the flag are one synchronous step, so no event slips
        // between the last flush and the flag.
        // A store that is briefly down (Redis restarting) gets until the
        // grace's end: retries with a growing pause, then the loss is counted.
        let pause = 100
        while (!this.#buffer.isEmpty) {
          try {
            await this.#flusher.flush()
          } catch (err) {
            if (Date.now() + pause >= deadline) throw err
            await sleep(pause)
            pause = Math.min(pause * 2, 2000)
          }
        }
        this.#finalFlushed = true
        // Only the reporter seals; another instance's flushed bytes are
        // sealed by the reporter in its next window.
        if (await this.#lease.hold()) await this.#sealer.seal(true)
      })
    } catch (err) {
      this.#finalFlushed = true
      const lost = this.#buffer.bytes
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

  #setState (state: CollectorState): void {
    this.#state = state
  }

  /** Run store operations one after another: a seal never overtakes the flush before it. */
  #serial<T> (fn: () => Promise<T>): Promise<T> {
    const next = this.#ops.then(fn, fn)
    this.#ops = next.catch(() => {})
    return next
  }
}
