import diagnosticsChannel from 'node:diagnostics_channel'
import type { MeterLogger } from './logger.ts'
import type { DiscardedUsage, OutboxEntry } from './types.ts'

/**
 * Metering events on `node:diagnostics_channel`, so that other code
 * can observe usage without patching the collector. Publishing costs one
 * `hasSubscribers` check when nobody listens.
 *
 * - `streammeter:traffic`  — every recorded {@link TrafficEvent}
 * - `streammeter:discard`  — `{ uid, bytes, startTime }` for every expired accumulator
 * - `streammeter:seal`     — `{ sealedAt, reports: [{ reportId, uids, bytes }] }`
 * - `streammeter:delivery` — `{ reportId, ok, status?, error?, attempts, result, retryInMs? }`
 *   per attempt; `result` is `delivered`, `failed` (retried after `retryInMs`),
 *   `split` (413: replaced by two halves) or `parked`
 * - `streammeter:drop`     — the {@link TrafficEvent} of a new uid dropped because
 *   `memoryMaxUids` uids already wait in memory for an unavailable store
 */
export const channels = Object.freeze({
  traffic: diagnosticsChannel.channel('streammeter:traffic'),
  discard: diagnosticsChannel.channel('streammeter:discard'),
  seal: diagnosticsChannel.channel('streammeter:seal'),
  delivery: diagnosticsChannel.channel('streammeter:delivery'),
  drop: diagnosticsChannel.channel('streammeter:drop')
})

/** Log the reports of a sealed window (at least one) and publish them on `streammeter:seal`. */
export function publishSeal (reports: readonly OutboxEntry[], logger: MeterLogger): void {
  logger.info({ reports: reports.length, uids: sum(reports, 'uids'), bytes: sum(reports, 'bytes') }, 'window sealed')
  if (channels.seal.hasSubscribers) {
    channels.seal.publish({
      sealedAt: reports[0]?.createdAt,
      reports: reports.map((r) => ({ reportId: r.reportId, uids: r.uids, bytes: r.bytes }))
    })
  }
}

/** Log expired sub-threshold usage, if any, and publish each on `streammeter:discard`. */
export function publishDiscards (discarded: readonly DiscardedUsage[], logger: MeterLogger): void {
  if (discarded.length === 0) return
  logger.debug({ uids: discarded.length, bytes: sum(discarded, 'bytes') }, 'sub-threshold usage expired')
  if (channels.discard.hasSubscribers) for (const d of discarded) channels.discard.publish(d)
}

function sum<K extends string> (items: ReadonlyArray<Record<K, number>>, key: K): number {
  let total = 0
  for (const item of items) total += item[key]
  return total
}
