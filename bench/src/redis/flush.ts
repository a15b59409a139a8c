/**
 * Flush cost of the Redis store: `RedisStore.flush` of N distinct uids,
 * first (every uid creates a record) and again (every uid merges into its
 * record), as a collector's flush tick does it.
 */
import { performance } from 'node:perf_hooks'
import type { FlushResult, UsageDelta } from '../../../src/meter/index.ts'
import type { RedisStore } from '../../../src/store/redis-store.ts'
import { countWrites, onFreshStores, scriptStats, slowestSince, slowlogMark } from './ledger.ts'
import type { Redis } from 'ioredis'
import { DEFAULT_POLICY, bytesOf, makeDeltas } from './input.ts'

/** One timed flush. */
export interface FlushSample {
  /** Wall time of `flush()` in this process: encoding, network, Lua, decoding. */
  ms: number
  /** Time Redis spent in scripts meanwhile (INFO commandstats, whole server). */
  luaMs: number
  /** Script calls Redis counted meanwhile (whole server); ours: `chunks`. */
  scriptCalls: number
  chunks: number
  /** Longest script of ours in the SLOWLOG, ms; undefined below its threshold. */
  slowestMs: number | undefined
  /** Writes to the socket: each is one round-trip. */
  roundTrips: number
}

/** One round: a fresh prefix, the first flush of N uids, then a second flush of the same uids. */
export interface FlushRound {
  create: FlushSample
  merge: FlushSample
  /** The store's totals equal the deltas' bytes and uids after both flushes. */
  ok: boolean
}

/** Flush `deltas` and measure it from both ends. */
async function timedFlush (admin: Redis, store: RedisStore, deltas: readonly UsageDelta[], chunk: number): Promise<{ sample: FlushSample, result: FlushResult }> {
  const mark = await slowlogMark(admin)
  const before = await scriptStats(admin)
  const t0 = performance.now()
  const { value: result, writes } = await countWrites(() => store.flush(deltas))
  const ms = performance.now() - t0
  const after = await scriptStats(admin)
  const slowest = await slowestSince(admin, mark, store.prefix)
  return {
    result,
    sample: {
      ms,
      luaMs: (after.usec - before.usec) / 1000,
      // commandstats counts INFO's own client's scripts too: none here.
      scriptCalls: after.calls - before.calls,
      chunks: Math.ceil(deltas.length / chunk),
      slowestMs: slowest === undefined ? undefined : slowest / 1000,
      roundTrips: writes
    }
  }
}

/** `rounds` rounds of create + merge flushes of `uids` uids with `chunk` uids per script. */
export async function flushRounds (uids: number, rounds: number, chunk: number, progress: (line: string) => void): Promise<FlushRound[]> {
  return await onFreshStores('flush', rounds, { policy: DEFAULT_POLICY, flushChunkUids: chunk }, async ({ admin, store, round: r }) => {
    // The first script on a connection goes as EVAL with its source; then EVALSHA.
    const warm = makeDeltas(1, 0, Date.now()).map((d) => ({ ...d, uid: 'warm-up' }))
    await store.flush(warm)
    const t0 = Date.now()
    const first = makeDeltas(uids, 0, t0)
    const second = makeDeltas(uids, 1, t0)
    const create = await timedFlush(admin, store, first, chunk)
    const merge = await timedFlush(admin, store, second, chunk)
    const summary = await store.summary(0)
    const ok = create.result.created === uids && merge.result.created === 0 &&
      summary.qualifiedUids + summary.pendingUids === uids + 1 &&
      summary.qualifiedBytes + summary.pendingBytes === bytesOf(first) + bytesOf(second) + bytesOf(warm)
    const result: FlushRound = { create: create.sample, merge: merge.sample, ok }
    progress(`  flush ${uids} uids, ${chunk}/script, round ${r + 1}/${rounds}: create ${create.sample.ms.toFixed(0)} ms, ` +
      `merge ${merge.sample.ms.toFixed(0)} ms${ok ? '' : ' CHECK FAILED'}`)
    return result
  })
}
