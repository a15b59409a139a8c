import diagnosticsChannel from 'node:diagnostics_channel'

/**
 * Metering events on `node:diagnostics_channel` (STYLE §22), so that other code
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
