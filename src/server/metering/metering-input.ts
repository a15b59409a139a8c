import type { FileType, TrafficCollector } from '../../meter/index.ts'

/**
 * One response as the metering input sees it: who was sent it, and how many
 * of its body bytes the client was sent so far. The node engine's transfers
 * (media/transfers.ts) are deliveries; an engine that only learns of a
 * response when it has ended (a log line) hands over one with its final
 * `bytes` and `recorded: 0`.
 */
export interface Delivery {
  readonly uid: string | undefined
  readonly fileType: FileType
  readonly ip: string
  readonly sessionId: string | undefined
  /** Body bytes the client was sent so far. */
  readonly bytes: number
  /** Of those, the bytes already recorded; kept by the metering input. */
  recorded: number
}

/**
 * The port between an engine (what moves the bytes and knows what each
 * client was sent) and the collector: "uid got N bytes of file type T from
 * IP I in session S" becomes `record()` calls (docs/metering.md#events).
 *
 * - At every flush (the collector's `beforeFlush` hook, so at least once per
 *   `TRAFFIC_FLUSH_INTERVAL`), each live delivery the engine lists is
 *   recorded for the bytes since its last piece: a crash (kill -9)
 *   mid-download loses at most what was sent in the last flush interval, not
 *   the whole response.
 * - When a response ends, whatever is left ({@link MeteringInput.finish}).
 *
 * The first piece of a response counts its request, later pieces count
 * bytes only, so a response is still one request however many pieces it took.
 */
export class MeteringInput {
  readonly #collector: TrafficCollector
  readonly #now: () => number

  /** @param now - ms since the epoch, the time pieces are recorded at */
  constructor (collector: TrafficCollector, now: () => number) {
    this.#collector = collector
    this.#now = now
  }

  /**
   * Record the progress of the deliveries `live()` lists before every flush.
   * An engine lists those whose `bytes` are settled: the node engine leaves
   * out a response being cut, whose last write may be counted whole until
   * its close takes back what the kernel never took.
   */
  watch (live: () => Iterable<Delivery>): void {
    this.#collector.beforeFlush(() => {
      const now = this.#now()
      for (const delivery of live()) this.#record(delivery, now)
    })
  }

  /** Record what is left of a response that ended (complete or aborted). */
  finish (delivery: Delivery): void {
    this.#record(delivery, this.#now())
  }

  #record (d: Delivery, time: number): void {
    const bytes = d.bytes - d.recorded
    if (d.uid === undefined || bytes <= 0) return
    this.#collector.record({
      uid: d.uid,
      bytes,
      fileType: d.fileType,
      ip: d.ip,
      sessionId: d.sessionId,
      time,
      requests: d.recorded === 0 ? 1 : 0
    })
    d.recorded = d.bytes
  }
}
