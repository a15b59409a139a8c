import { randomUUID } from 'node:crypto'
import { CollectorStateError } from '../errors.ts'
import { channels, publishDiscards } from './diagnostics.ts'
import type { MeterLogger } from './logger.ts'
import type { InstanceCounters } from './traffic-status.ts'
import type { TrafficEvent } from './types.ts'
import type { UsageBuffer } from './usage-buffer.ts'
import type { FlushResult, LogCursor, UsageStore } from './usage-store.ts'

/** What a {@link UsageFlusher} works with. */
export interface UsageFlusherOptions {
  /** Where batches go. */
  store: UsageStore
  /** Where they come from; a failed batch is held there. */
  buffer: UsageBuffer
  /** The collector's counters: `flushes`, `flush_failures`, `events_dropped` and `bytes_dropped` are counted here. */
  counters: InstanceCounters
  logger: MeterLogger
  /** True once the collector's final flush is done: flush hooks no longer run. */
  hooksClosed: () => boolean
}

/**
 * Moves the {@link UsageBuffer} into the store, one batch at a time, and
 * keeps track of the store's availability: a failure is logged when the
 * store becomes unavailable, the recovery when it answers again, not every
 * attempt in between; the same goes for usage the buffer's cap drops.
 *
 * Not reentrant: the collector runs one store operation at a time.
 */
export class UsageFlusher {
  readonly #o: UsageFlusherOptions
  readonly #hooks: Array<() => void> = []
  /** The log position everything recorded so far reaches (`TrafficCollector.logPosition`). */
  #cursor: LogCursor | undefined
  /** The position the last batch with a cursor reached: a new batch is due when the cursor moved past it. */
  #batched: number | undefined
  /** False from a failed flush until one succeeds: state changes are logged, not every failure. */
  #storeAvailable = true
  /** True from the first dropped event until the next successful flush (one log line per episode). */
  #dropping = false

  constructor (options: UsageFlusherOptions) {
    this.#o = options
  }

  /** Everything recorded from now on up to this call comes from a log up to `cursor.position`. */
  setCursor (cursor: LogCursor): void {
    if (this.#cursor !== undefined && this.#cursor.key !== cursor.key) {
      throw new CollectorStateError(`one log per collector: this one reads ${this.#cursor.key}, not ${cursor.key}`)
    }
    this.#cursor = { key: cursor.key, position: cursor.position }
    this.#batched ??= cursor.position
  }

  /** Call `hook` at every flush, just before the map is drained (`TrafficCollector.beforeFlush`). */
  addHook (hook: () => void): void {
    this.#hooks.push(hook)
  }

  /**
   * Send the buffer's deltas as one batch with a fresh batch id. A batch
   * whose flush failed is kept as it is and sent again, with the same id,
   * before anything newer: a store whose failure is ambiguous (Redis: the
   * script ran, the answer was lost) applies a batch id at most once, so a
   * retry can never count bytes twice. New events meanwhile wait in the map.
   */
  async flush (): Promise<FlushResult | undefined> {
    const { store, buffer } = this.#o
    const held = buffer.held
    if (held !== undefined) {
      let result: FlushResult
      try {
        result = await store.flush(held.deltas, held.id, held.cursor)
      } catch (err) {
        this.#failed(err)
        throw err
      }
      buffer.release()
      this.#flushed(result)
    }
    if (!this.#o.hooksClosed()) {
      for (const hook of this.#hooks) {
        try {
          hook()
        } catch (err) {
          this.#o.logger.error({ err }, 'a flush hook failed')
        }
      }
    }
    const cursor = this.#cursor
    const moved = cursor !== undefined && cursor.position !== this.#batched
    if (buffer.uids === 0 && !moved) return undefined
    // A batch from a log is named by the lines it holds: the same lines read
    // again after a crash make the same batch, with the same id, so a store
    // that applied part of it skips that part (Redis' chunks); other lines
    // never share an id with it.
    const batch = buffer.drain(cursor === undefined ? randomUUID() : `log:${cursor.key}@${this.#batched ?? 0}-${cursor.position}`)
    if (cursor !== undefined) {
      // Lines that metered nothing (refusals, HEADs) still move the position.
      batch.cursor = { key: cursor.key, position: cursor.position }
      this.#batched = cursor.position
    }
    try {
      const result = await store.flush(batch.deltas, batch.id, batch.cursor)
      this.#flushed(result)
      return result
    } catch (err) {
      buffer.hold(batch)
      this.#failed(err)
      throw err
    }
  }

  /** Count an event the buffer's cap turned away, and say so once per episode. */
  drop (event: TrafficEvent): void {
    const counters = this.#o.counters
    counters.events_dropped++
    counters.bytes_dropped += event.bytes
    if (!this.#dropping) {
      this.#dropping = true
      this.#o.logger.error({ memoryMaxUids: this.#o.buffer.maxUids },
        'memory cap reached: usage of new uids is dropped until the store takes the waiting usage (counted in bytes_dropped)')
    }
    if (channels.drop.hasSubscribers) channels.drop.publish(event)
  }

  #failed (err: unknown): void {
    this.#o.counters.flush_failures++
    if (!this.#storeAvailable) return
    this.#storeAvailable = false
    this.#o.logger.warn({ err, unflushedBytes: this.#o.buffer.bytes },
      'store unavailable: usage is kept in memory and flushed when it answers again')
  }

  #flushed (result: FlushResult): void {
    const counters = this.#o.counters
    counters.flushes++
    this.#dropping = false
    if (!this.#storeAvailable) {
      this.#storeAvailable = true
      this.#o.logger.info({ flushFailures: counters.flush_failures }, 'store available again: usage kept in memory is flushed')
    }
    publishDiscards(result.discarded, this.#o.logger)
  }
}
