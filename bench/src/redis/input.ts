/**
 * Flush batches as a collector sends them: one delta per distinct uid, as
 * an HLS viewer's second of traffic looks (segments and playlists, one IP,
 * one session).
 */
import type { UsageDelta, UsagePolicy } from '../../../src/meter/index.ts'

/** The server's defaults (1 MiB threshold, 600 s timeout, 20 IPs, 10 sessions). */
export const DEFAULT_POLICY: UsagePolicy = Object.freeze({ minBytes: 1_048_576, accumulatorTimeoutMs: 600_000, maxIps: 20, maxSessions: 10 })

/** Uids as a platform issues them: `u` and 8 digits. */
export function uidOf (n: number): string {
  return `u${String(n).padStart(8, '0')}`
}

/**
 * Deltas for uids `0 … count-1`, round `round` (a later round of the same
 * uids merges into the records the earlier one created). Bytes are 4 KiB to
 * ~1.5 MiB, deterministic, so about a third of the uids cross the 1 MiB
 * threshold in their first flush and most do in their second.
 */
export function makeDeltas (count: number, round: number, t0: number): UsageDelta[] {
  const out: UsageDelta[] = new Array<UsageDelta>(count)
  for (let n = 0; n < count; n++) {
    const segment = 4096 * (1 + ((n * 2654435761 + round * 97) >>> 0) % 384)
    out[n] = {
      uid: uidOf(n),
      bytes: segment + 1200,
      requests: 2,
      fileTypes: { ts: segment, m3u8: 1200 },
      ips: [`10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`],
      sessions: [(n * 40503 + 0x9e3779b9).toString(16).padStart(32, '0')],
      firstSeen: t0 + round * 1000,
      lastSeen: t0 + round * 1000 + 900
    }
  }
  return out
}

/** Sum of the deltas' bytes. */
export function bytesOf (deltas: readonly UsageDelta[]): number {
  let sum = 0
  for (const d of deltas) sum += d.bytes
  return sum
}
