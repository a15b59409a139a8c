import type { DiscardedUsage, UsageDelta, UsagePolicy, UsageRecord } from './types.ts'

/**
 * The merge rules every store applies, so that memory, SQLite and Redis agree
 * byte for byte (the Redis store restates them in Lua; the contract suite
 * checks that it does).
 */

/** Result of merging one delta into a store's record for that uid. */
export interface MergeOutcome {
  record: UsageRecord
  /** A new cycle was started (no record, or the old one had expired). */
  created: boolean
  /** The old sub-threshold cycle had expired before this delta's first byte and was discarded. */
  discarded?: DiscardedUsage | undefined
}

/**
 * True when a sub-threshold cycle that began at `startTime` is expired at `now`:
 * it began longer ago than the timeout. Qualified records never expire.
 */
export function isExpired (record: Pick<UsageRecord, 'qualified' | 'startTime'>, now: number, policy: UsagePolicy): boolean {
  return !record.qualified && now - record.startTime > policy.accumulatorTimeoutMs
}

/**
 * Merge `delta` into `existing` (which is not modified) and apply the threshold.
 * When `existing` had already expired by the delta's first byte, its bytes are
 * discarded and the delta starts a new cycle.
 */
export function mergeDelta (existing: UsageRecord | undefined, delta: UsageDelta, policy: UsagePolicy): MergeOutcome {
  let discarded: DiscardedUsage | undefined
  let base = existing
  if (base !== undefined && isExpired(base, delta.firstSeen, policy)) {
    discarded = { uid: base.uid, bytes: base.bytes, startTime: base.startTime }
    base = undefined
  }
  if (base === undefined) {
    const record: UsageRecord = {
      uid: delta.uid,
      bytes: delta.bytes,
      requests: delta.requests,
      fileTypes: { ...delta.fileTypes },
      ips: delta.ips.slice(0, policy.maxIps),
      sessions: delta.sessions.slice(0, policy.maxSessions),
      startTime: delta.firstSeen,
      lastActivity: delta.lastSeen,
      qualified: delta.bytes >= policy.minBytes
    }
    return { record, created: true, discarded }
  }
  const fileTypes = { ...base.fileTypes }
  for (const [type, bytes] of Object.entries(delta.fileTypes)) {
    fileTypes[type] = (fileTypes[type] ?? 0) + bytes
  }
  const bytes = base.bytes + delta.bytes
  const record: UsageRecord = {
    uid: base.uid,
    bytes,
    requests: base.requests + delta.requests,
    fileTypes,
    ips: unionCapped(base.ips, delta.ips, policy.maxIps),
    sessions: unionCapped(base.sessions, delta.sessions, policy.maxSessions),
    startTime: Math.min(base.startTime, delta.firstSeen),
    lastActivity: Math.max(base.lastActivity, delta.lastSeen),
    qualified: base.qualified || bytes >= policy.minBytes
  }
  return { record, created: false, discarded }
}

/** `a` followed by the members of `b` not in `a`, at most `cap` in all (first seen are kept). */
export function unionCapped (a: readonly string[], b: readonly string[], cap: number): string[] {
  const out = a.length > cap ? a.slice(0, cap) : a.slice()
  for (const v of b) {
    if (out.length >= cap) break
    if (!out.includes(v)) out.push(v)
  }
  return out
}
