/**
 * Redis memory per stored uid: N uids flushed into a fresh prefix, measured
 * two ways. MEMORY USAGE of the prefix's keys counts exactly this store
 * (every element, SAMPLES 0); INFO's used_memory before and after counts
 * the whole server, so other clients' writes meanwhile blur it.
 */
import { DEFAULT_POLICY, makeDeltas } from './input.ts'
import { onFreshStores, prefixMemory, usedMemory } from './ledger.ts'

export interface MemoryRound {
  uids: number
  /** `pending`: every uid below the threshold (in the expiry index); `qualified`: every uid qualified. */
  state: 'pending' | 'qualified'
  /** Sum of MEMORY USAGE over the prefix's keys, per uid. */
  keysBytesPerUid: number
  /** used_memory after − before, per uid (whole server). */
  usedMemoryPerUid: number
  ok: boolean
}

export async function memoryRounds (uids: number, state: MemoryRound['state'], rounds: number, progress: (line: string) => void): Promise<MemoryRound[]> {
  const policy = { ...DEFAULT_POLICY, minBytes: state === 'qualified' ? 0 : Number.MAX_SAFE_INTEGER }
  return await onFreshStores('memory', rounds, { policy }, async ({ admin, store, prefix, round: r }) => {
    const deltas = makeDeltas(uids, 0, Date.now())
    const before = await usedMemory(admin)
    await store.flush(deltas)
    const after = await usedMemory(admin)
    const keys = await prefixMemory(admin, prefix)
    const summary = await store.summary(0)
    const ok = (state === 'qualified' ? summary.qualifiedUids : summary.pendingUids) === uids
    const result: MemoryRound = { uids, state, keysBytesPerUid: keys.bytes / uids, usedMemoryPerUid: (after - before) / uids, ok }
    progress(`  memory ${uids} ${state} uids, round ${r + 1}/${rounds}: ${(keys.bytes / uids).toFixed(0)} B/uid (keys), ` +
      `${((after - before) / uids).toFixed(0)} B/uid (used_memory)${ok ? '' : ' CHECK FAILED'}`)
    return result
  })
}
