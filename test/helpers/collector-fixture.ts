import { ManualClock, TrafficCollector, policyOf, resolveMeterOptions } from '../../src/meter/index.ts'
import type { CollectorDeps, MeterOptions, UsageStore } from '../../src/meter/index.ts'
import { MemoryStore } from '../../src/store/memory-store.ts'

/** A collector on a manual clock with deterministic ids, over a memory store unless one is given. */
export function makeCollector (
  options: Partial<MeterOptions>,
  deps: Partial<CollectorDeps> & { storeFactory?: (policy: ReturnType<typeof policyOf>) => UsageStore } = {}
): { collector: TrafficCollector, clock: ManualClock, store: UsageStore } {
  const clock = deps.clock instanceof ManualClock ? deps.clock : new ManualClock()
  const resolved = resolveMeterOptions({ workerId: 'test-worker', ...options })
  const policy = policyOf(resolved)
  const store = deps.store ?? deps.storeFactory?.(policy) ?? new MemoryStore(policy)
  let n = 0
  const collector = new TrafficCollector(resolved, {
    newId: () => `id-${String(++n).padStart(4, '0')}`,
    random: () => 0.5,
    ...deps,
    store,
    clock
  })
  return { collector, clock, store }
}

export const KiB = 1024
export const MiB = 1024 * 1024
