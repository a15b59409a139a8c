import { cpus, loadavg, totalmem } from 'node:os'

/** Where a benchmark ran: results only compare on like machines. */
export interface MachineInfo {
  node: string
  v8: string
  platform: string
  arch: string
  cpu: string
  cpus: number
  memoryGiB: number
  /** Latency of one dependent random load over 64 MiB, ns (see {@link randomLoadLatencyNs}). */
  randomLoadNs: number
  /** 1-minute load average when the run started: other work on the machine skews every number. */
  loadAverage: number
}

/** Describe this machine, including a short memory-latency probe (about a second). */
export function describeMachine (): MachineInfo {
  const list = cpus()
  return {
    node: process.version,
    v8: process.versions.v8,
    platform: process.platform,
    arch: process.arch,
    cpu: list[0]?.model.trim() ?? 'unknown',
    cpus: list.length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    randomLoadNs: randomLoadLatencyNs(64),
    loadAverage: loadavg()[0] ?? 0
  }
}

/**
 * Mean time of one load whose address depends on the previous one, over a
 * random cycle through `mib` MiB: roughly the cost of each cache miss that
 * inserting into a hash table of a million uids cannot avoid. Virtual
 * machines often show several times the bare-metal figure (nested paging),
 * which bounds the 1M-uid throughput however `record()` is written.
 */
export function randomLoadLatencyNs (mib: number, steps = 2_000_000): number {
  const n = (mib * 2 ** 20) / 4
  const next = new Int32Array(n)
  // Sattolo's shuffle: one cycle through every slot, so the chase never settles in cache.
  const order = new Int32Array(n)
  for (let i = 0; i < n; i++) order[i] = i
  let x = 0x9e3779b9
  for (let i = n - 1; i > 0; i--) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    const j = (x >>> 0) % i
    const t = order[i] as number
    order[i] = order[j] as number
    order[j] = t
  }
  for (let i = 0; i < n; i++) next[order[i] as number] = order[(i + 1) % n] as number
  let p = 0
  const t0 = process.hrtime.bigint()
  for (let s = 0; s < steps; s++) p = next[p] as number
  const ns = Number(process.hrtime.bigint() - t0)
  // `p` is used so that the loop cannot be dropped.
  return p >= 0 ? ns / steps : Number.NaN
}
