import type { ServerResponse } from 'node:http'
import type { FileType } from '../../meter/index.ts'
import type { Delivery } from '../metering/metering-input.ts'

/**
 * One response being streamed, as `/active-transfers` shows it: the node
 * engine's {@link Delivery}, counted in the socket's write callbacks.
 */
export interface Transfer extends Delivery {
  readonly id: number
  readonly uid: string | undefined
  readonly path: string
  readonly fileType: FileType
  readonly ip: string
  readonly sessionId: string | undefined
  /** ms since the epoch. */
  readonly startedAt: number
  /** Body bytes the socket has taken so far (write callbacks). */
  bytes: number
  /** Of those, the bytes already recorded as traffic (metering-input.ts). */
  recorded: number
  /** Body bytes this response will have, when known. */
  total: number | undefined
  /** The response being written (the send timeout watches its socket). */
  readonly response: ServerResponse | undefined
  /** Send-timeout bookkeeping (send-timeout.ts): the socket's progress mark at the last sweep… */
  waitMark: number
  /** …and since when (monotonic ms) it has not moved while bytes wait; -1 when nothing waits. */
  waitSince: number
  /**
   * Bytes of the write in flight that the kernel never took when the send
   * timeout cut the socket. Node reports a write that was pending on a
   * socket destroyed under it as a success (its callback gets no error), so
   * that write is counted whole; {@link TransferRegistry.close} takes this
   * part back, leaving exactly what the client can receive.
   */
  unsent: number
}

/** The `/active-transfers` view of one transfer. */
export interface TransferView {
  id: number
  uid: string | null
  path: string
  file_type: FileType
  ip: string
  session_id: string | null
  started_at: number
  duration_seconds: number
  bytes: number
  total_bytes: number | null
  /** Bytes per second since the start. */
  speed: number
  /** 0..1, or null when the length is unknown. */
  progress: number | null
}

/**
 * Responses in flight. The media route adds one when it starts writing a
 * body and removes it when the response closes; shutdown waits on `size`.
 */
export class TransferRegistry {
  #next = 0
  #live = new Map<number, Transfer>()
  #idle: Array<() => void> = []
  /** Bytes of the transfers already closed. */
  #closedBytes = 0

  /** Number of transfers in flight. */
  get size (): number {
    return this.#live.size
  }

  /** Register a new transfer. */
  open (t: Omit<Transfer, 'id' | 'bytes' | 'recorded' | 'response' | 'waitMark' | 'waitSince' | 'unsent'> & { response?: ServerResponse | undefined }): Transfer {
    // Spelled out rather than spread: one object shape for every transfer,
    // built without a property-by-property copy, which showed in the
    // profile with the spread (docs/performance.md#why-the-code-is-shaped-this-way).
    const transfer: Transfer = {
      id: ++this.#next,
      uid: t.uid,
      path: t.path,
      fileType: t.fileType,
      ip: t.ip,
      sessionId: t.sessionId,
      startedAt: t.startedAt,
      bytes: 0,
      recorded: 0,
      total: t.total,
      response: t.response,
      waitMark: 0,
      waitSince: -1,
      unsent: 0
    }
    this.#live.set(transfer.id, transfer)
    return transfer
  }

  /**
   * Remove a finished or aborted transfer, once its response closed and its
   * write callbacks ran; its `bytes` are then final (see {@link Transfer.unsent}).
   */
  close (transfer: Transfer): void {
    if (transfer.unsent > 0) {
      transfer.bytes = Math.max(0, transfer.bytes - transfer.unsent)
      transfer.unsent = 0
    }
    if (this.#live.delete(transfer.id)) this.#closedBytes += transfer.bytes
    if (this.#live.size === 0) for (const resolve of this.#idle.splice(0)) resolve()
  }

  /** Resolves when no transfer is in flight. */
  idle (): Promise<void> {
    if (this.#live.size === 0) return Promise.resolve()
    return new Promise((resolve) => this.#idle.push(resolve))
  }

  /**
   * Body bytes every client socket has taken since start: the closed
   * transfers' plus the live ones' progress so far. Sampled once a second for
   * the dashboard's throughput, so a long response shows as a steady rate
   * rather than one jump when it ends. O(live transfers).
   */
  bytesTaken (): number {
    let bytes = this.#closedBytes
    for (const t of this.#live.values()) bytes += t.bytes
    return bytes
  }

  /** The transfers in flight, in the order they started. */
  live (): IterableIterator<Transfer> {
    return this.#live.values()
  }

  /**
   * The transfers in flight whose `bytes` are settled: all but those being
   * cut by the send timeout, whose last write may be counted whole until
   * {@link close} takes back the part the kernel never took.
   */
  * settled (): Generator<Transfer> {
    for (const t of this.#live.values()) if (t.unsent === 0) yield t
  }

  /** Snapshot for `/active-transfers`, largest first. */
  list (now: number, limit = 500): TransferView[] {
    const out: TransferView[] = []
    for (const t of this.#live.values()) {
      const seconds = Math.max(0.001, (now - t.startedAt) / 1000)
      out.push({
        id: t.id,
        uid: t.uid ?? null,
        path: t.path,
        file_type: t.fileType,
        ip: t.ip,
        session_id: t.sessionId ?? null,
        started_at: Math.floor(t.startedAt / 1000),
        duration_seconds: Math.round(seconds * 10) / 10,
        bytes: t.bytes,
        total_bytes: t.total ?? null,
        speed: Math.round(t.bytes / seconds),
        progress: t.total !== undefined && t.total > 0 ? Math.round((t.bytes / t.total) * 1000) / 1000 : null
      })
    }
    return out.sort((a, b) => b.bytes - a.bytes).slice(0, limit)
  }
}
