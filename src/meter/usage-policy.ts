import type { MeterOptions } from './options.ts'
import type { UsagePolicy } from './types.ts'
import type { UsageStore } from './usage-store.ts'

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
 * Refuse a store opened with another policy than the options imply: usage
 * merged under one threshold and reported under another would be wrong.
 * @throws {RangeError}
 */
export function checkStorePolicy (store: UsageStore, options: Readonly<MeterOptions>): void {
  const policy = policyOf(options)
  const sp = store.policy
  if (sp.minBytes !== policy.minBytes || sp.accumulatorTimeoutMs !== policy.accumulatorTimeoutMs ||
    sp.maxIps !== policy.maxIps || sp.maxSessions !== policy.maxSessions) {
    throw new RangeError('the store was opened with a different usage policy than the collector options')
  }
}
