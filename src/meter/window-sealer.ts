import type { Clock, IdSource } from './clock.ts'
import { publishSeal } from './diagnostics.ts'
import type { MeterLogger } from './logger.ts'
import type { MeterOptions } from './options.ts'
import { renderReports } from './report-builder.ts'
import type { ReportContext } from './report-builder.ts'
import type { SealResult, UsageStore } from './usage-store.ts'

/** What a {@link WindowSealer} works with. */
export interface WindowSealerOptions {
  store: UsageStore
  clock: Clock
  logger: MeterLogger
  /** The collector's options: the window's length and the reports' fixed facts. */
  options: Readonly<MeterOptions>
  /** Report and window ids. */
  newId: IdSource
  /** Called when a seal wrote reports to the outbox (to wake the reporter). */
  onReports: () => void
}

/**
 * Seals the window into the store's outbox: the store decides whether it is
 * due (src/meter/seal-schedule.ts) and renders the qualified records into
 * reports within its transaction; a seal that wrote reports is logged and
 * published on `streammeter:seal`.
 */
export class WindowSealer {
  readonly #o: WindowSealerOptions
  readonly #intervalMs: number
  readonly #context: ReportContext

  constructor (options: WindowSealerOptions) {
    this.#o = options
    const o = options.options
    this.#intervalMs = Math.round(o.reportInterval * 1000)
    this.#context = {
      workerId: o.workerId,
      reportInterval: o.reportInterval,
      minBytes: o.minBytes,
      maxUidsPerReport: o.reportMaxUids,
      maxBytesPerReport: o.reportMaxBytes,
      newId: options.newId
    }
  }

  /** Seal if the window is due, or always with `force` (graceful stop). */
  async seal (force: boolean): Promise<SealResult> {
    const { store, clock } = this.#o
    const context = this.#context
    const result = await store.seal({
      now: clock.now(),
      intervalMs: this.#intervalMs,
      force,
      render: (records, sealedAt) => renderReports(records, sealedAt, context)
    })
    if (result.reports.length > 0) {
      publishSeal(result.reports, this.#o.logger)
      this.#o.onReports()
    }
    return result
  }
}
