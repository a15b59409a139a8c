import type { TrafficCollector } from '../../meter/index.ts'
import type { Transfer, TransferRegistry } from '../media/transfers.ts'

/**
 * Where the bytes each client was sent become `record()` calls (docs/metering.md#events).
 * A response's body bytes are counted on its {@link Transfer} in the socket's
 * write callbacks; this turns them into traffic events:
 *
 * - at every flush (the collector's `beforeFlush` hook, so at least once per
 *   `TRAFFIC_FLUSH_INTERVAL`), each live transfer's bytes since it was last
 *   recorded: a crash (kill -9) mid-download loses at most what was sent in
 *   the last flush interval, not the whole response;
 * - when a response ends, whatever is left.
 *
 * The first piece of a response counts its request, later pieces count
 * bytes only, so a response is still one request however many pieces it took.
 */
export class MeteringInput {
  readonly #collector: TrafficCollector
  readonly #transfers: TransferRegistry
  readonly #now: () => number

  constructor (collector: TrafficCollector, transfers: TransferRegistry, now: () => number) {
    this.#collector = collector
    this.#transfers = transfers
    this.#now = now
    collector.beforeFlush(() => { this.progress() })
  }

  /** Record the bytes every live transfer's socket took since its last piece. O(live transfers). */
  progress (): void {
    const now = this.#now()
    for (const transfer of this.#transfers.live()) {
      // Being cut by the send timeout: its last write may be counted whole
      // before the part the kernel never took is taken back at close, so it
      // is recorded only then, by finish().
      if (transfer.unsent === 0) this.#record(transfer, now)
    }
  }

  /** Record what is left of a response that ended (complete or aborted). */
  finish (transfer: Transfer): void {
    this.#record(transfer, this.#now())
  }

  #record (t: Transfer, time: number): void {
    const bytes = t.bytes - t.recorded
    if (t.uid === undefined || bytes <= 0) return
    this.#collector.record({
      uid: t.uid,
      bytes,
      fileType: t.fileType,
      ip: t.ip,
      sessionId: t.sessionId,
      time,
      requests: t.recorded === 0 ? 1 : 0
    })
    t.recorded = t.bytes
  }
}
