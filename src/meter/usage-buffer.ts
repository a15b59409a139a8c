import type { LogCursor } from './usage-store.ts'
import { DeltaMap } from './delta-map.ts'
import type { UsageDelta } from './types.ts'

/** Usage sent to the store in one flush. */
export interface UsageBatch {
  /** A store applies each batch id at most once. */
  readonly id: string
  /** Bytes in `deltas`. */
  readonly bytes: number
  readonly deltas: UsageDelta[]
  /** The log position these deltas reach, committed with them (`UsageStore.flush`). */
  cursor?: LogCursor | undefined
}

/**
 * Usage recorded in this process and not yet in the store: the per-uid
 * deltas since the last flush, at most `maxUids` uids of them, and a batch
 * whose flush failed, held to be sent again (same id) before anything newer.
 * Memory only: `accepts` and `add` are on the hot path.
 */
export class UsageBuffer {
  readonly #deltas: DeltaMap
  readonly #maxUids: number
  /** Bytes in the map. */
  #bytes = 0
  #held: UsageBatch | undefined

  constructor (maxUids: number, maxIps: number, maxSessions: number) {
    this.#maxUids = maxUids
    this.#deltas = new DeltaMap(maxIps, maxSessions)
  }

  /** Most uids the map holds (`memoryMaxUids`). */
  get maxUids (): number {
    return this.#maxUids
  }

  /** Uids in the map, a held batch not counted. */
  get uids (): number {
    return this.#deltas.size
  }

  /**
   * Whether an event of `uid` fits. The bound keeps memory finite while the
   * store is unavailable: a known uid keeps counting in its slot, a new uid
   * fits only below the cap.
   */
  accepts (uid: string): boolean {
    return this.#deltas.size < this.#maxUids || this.#deltas.has(uid)
  }

  /** Add one event; see {@link DeltaMap.add}. Check {@link UsageBuffer.accepts} first. */
  add (uid: string, bytes: number, typeIndex: number, ip: string | undefined, sid: string | undefined, time: number, requests: number): void {
    this.#deltas.add(uid, bytes, typeIndex, ip, sid, time, requests)
    this.#bytes += bytes
  }

  /** Take the map's deltas as a batch with id `id`; the map starts empty. */
  drain (id: string): UsageBatch {
    const batch = { id, bytes: this.#bytes, deltas: this.#deltas.drain() }
    this.#bytes = 0
    return batch
  }

  /** The batch whose flush failed, to be sent again first; undefined when none. */
  get held (): UsageBatch | undefined {
    return this.#held
  }

  /** Keep `batch`, whose flush failed, until {@link release}. */
  hold (batch: UsageBatch): void {
    this.#held = batch
  }

  /** The store took the held batch. */
  release (): void {
    this.#held = undefined
  }

  /** Nothing waits for the store: the map is empty and no batch is held. */
  get isEmpty (): boolean {
    return this.#deltas.size === 0 && this.#held === undefined
  }

  /** Bytes recorded here and not yet in the store: the map plus a held batch. */
  get bytes (): number {
    return this.#bytes + (this.#held?.bytes ?? 0)
  }

  /** Uids not yet in the store: the map's plus a held batch's (a uid in both counts twice). */
  get unflushedUids (): number {
    return this.#deltas.size + (this.#held?.deltas.length ?? 0)
  }
}
