import { fixed, int, median, table } from '../lib/format.ts'
import { LIMITS, RATIOS, SCENARIOS, TARGETS } from './plan.ts'
import type { RatioSpec, ScenarioId, TargetId, TargetSpec } from './plan.ts'
import type { CoreTimes } from './proc-stats.ts'
import type { WrkResult } from './wrk.ts'

const MIB = 2 ** 20
const GIB = 2 ** 30

/** One wrk run against one target, with the target's CPU and memory over it. */
export interface Sample {
  scenario: ScenarioId
  target: TargetId
  /** 0 for the warm-up, 1… for timed rounds. */
  round: number
  startedAt: string
  wrk: WrkResult
  /** utime + stime of the target's processes over the run. */
  cpuSeconds: number
  /** VmHWM after the run, reset just before it (summed over nginx's master and worker). */
  peakRssBytes: number
  /**
   * Busy and stolen seconds of the target core and of the load core over the
   * run, all processes included: the target core's busy time minus
   * `cpuSeconds` is other work that competed with the target.
   */
  cores: { target: CoreTimes, load: CoreTimes }
  /** Wall time over which `cpuSeconds` and `cores` were taken (wrk's run plus its start and exit). */
  wallSeconds: number
}

/** Share of the run the target core spent on processes other than the target (0..1). */
export function othersOnTargetCore (s: Sample): number {
  return Math.max(0, s.cores.target.busy - s.cpuSeconds) / s.wallSeconds
}

/** Responses per second. */
export function reqPerSec (s: Sample): number {
  return s.wrk.requests / (s.wrk.durationUs / 1e6)
}

/** wrk's Transfer/sec, in MiB/s (headers included; negligible next to 1 MiB bodies). */
export function mibPerSec (s: Sample): number {
  return s.wrk.bytes / MIB / (s.wrk.durationUs / 1e6)
}

/** The scenario's throughput figure: MiB/s or req/s. */
export function throughput (s: Sample): number {
  const unit = SCENARIOS.find((x) => x.id === s.scenario)?.unit
  return unit === 'req/s' ? reqPerSec(s) : mibPerSec(s)
}

/** wrk's socket errors plus responses with status ≥ 400. */
export function errorCount (s: Sample): number {
  const e = s.wrk.errors
  return e.connect + e.read + e.write + e.status + e.timeout
}

/** Medians of one (scenario, target) cell over its timed rounds. */
export interface CellSummary {
  scenario: ScenarioId
  target: TargetId
  rounds: number
  throughput: number
  cpuSecondsPerGiB: number
  cpuMicrosPerRequest: number
  peakRssMiB: number
  /** Summed over the timed rounds. */
  errors: number
  /** Throughput of each timed round, in round order (for paired ratios). */
  perRound: number[]
}

/** Per scenario, one summary per target of `targets` (the run's, in table order) that was measured in it. */
export function summarize (samples: readonly Sample[], targets: readonly TargetSpec[] = TARGETS): CellSummary[] {
  const out: CellSummary[] = []
  for (const sc of SCENARIOS) {
    for (const t of targets) {
      const timed = samples.filter((s) => s.scenario === sc.id && s.target === t.id && s.round > 0).sort((a, b) => a.round - b.round)
      if (timed.length === 0) continue
      out.push({
        scenario: sc.id,
        target: t.id,
        rounds: timed.length,
        throughput: median(timed.map(throughput)),
        cpuSecondsPerGiB: medianOrNaN(timed.filter((s) => s.wrk.bytes > 0).map((s) => s.cpuSeconds / (s.wrk.bytes / GIB))),
        cpuMicrosPerRequest: medianOrNaN(timed.filter((s) => s.wrk.requests > 0).map((s) => s.cpuSeconds * 1e6 / s.wrk.requests)),
        peakRssMiB: median(timed.map((s) => s.peakRssBytes / MIB)),
        errors: timed.reduce((n, s) => n + errorCount(s), 0),
        perRound: timed.map(throughput)
      })
    }
  }
  return out
}

/** The median, or NaN (shown as n/a) when no run delivered anything to divide by. */
function medianOrNaN (values: readonly number[]): number {
  return values.length === 0 ? Number.NaN : median(values)
}

/** `fixed`, with n/a for NaN. */
function num (n: number, digits: number): string {
  return Number.isNaN(n) ? 'n/a' : fixed(n, digits)
}

/** A ratio of medians, with the paired figure (median of per-round ratios, since rounds interleave). */
export interface RatioResult {
  spec: RatioSpec
  ratio: number | undefined
  paired: number | undefined
  meets: boolean | undefined
}

/** The ratios of {@link RATIOS} between targets of `targets` (the run's): a ratio with a target not in the run is left out. */
export function ratios (cells: readonly CellSummary[], targets: readonly TargetSpec[] = TARGETS): RatioResult[] {
  const inRun = (id: TargetId): boolean => targets.some((t) => t.id === id)
  return RATIOS.filter((spec) => inRun(spec.numerator) && inRun(spec.denominator)).map((spec) => {
    const a = cell(cells, spec.scenario, spec.numerator)
    const b = cell(cells, spec.scenario, spec.denominator)
    if (a === undefined || b === undefined || b.throughput === 0) return { spec, ratio: undefined, paired: undefined, meets: undefined }
    const ratio = a.throughput / b.throughput
    const n = Math.min(a.perRound.length, b.perRound.length)
    const paired = n === 0 ? undefined : median(Array.from({ length: n }, (_, i) => (a.perRound[i] as number) / (b.perRound[i] as number)))
    return { spec, ratio, paired, meets: ratio >= spec.min && (spec.max === undefined || ratio <= spec.max) }
  })
}

/** An absolute limit on a metered streammeter target. */
export interface LimitResult {
  label: string
  value: number | undefined
  limit: string
  meets: boolean | undefined
}

/** The limits of each metered target of `targets` (the run's). */
export function limits (cells: readonly CellSummary[], targets: readonly TargetSpec[] = TARGETS): LimitResult[] {
  const out: LimitResult[] = []
  for (const t of targets.filter((x) => x.metered)) {
    const s1 = cell(cells, 's1', t.id)?.cpuSecondsPerGiB
    out.push({ label: `${t.label}: CPU s/GiB in S1`, value: s1, limit: `<= ${LIMITS.cpuSecondsPerGiBS1}`, meets: s1 === undefined ? undefined : s1 <= LIMITS.cpuSecondsPerGiBS1 })
    const rss = cell(cells, 's2', t.id)?.peakRssMiB
    out.push({ label: `${t.label}: peak RSS MiB under S2`, value: rss, limit: `<= ${LIMITS.peakRssMiBS2}`, meets: rss === undefined ? undefined : rss <= LIMITS.peakRssMiBS2 })
  }
  return out
}

export function cell (cells: readonly CellSummary[], scenario: ScenarioId, target: TargetId): CellSummary | undefined {
  return cells.find((c) => c.scenario === scenario && c.target === target)
}

function verdict (ok: boolean | undefined): string {
  return ok === undefined ? 'n/a' : ok ? 'OK' : 'MISS'
}

/** The table of medians (rows: figures, columns: targets) and the ratios against the targets. */
export function renderTables (cells: readonly CellSummary[], targets: readonly TargetSpec[] = TARGETS): string {
  const shown = targets.filter((t) => cells.some((c) => c.target === t.id))
  const row = (label: string, scenario: ScenarioId, pick: (c: CellSummary) => string): string[] =>
    [label, ...shown.map((t) => { const c = cell(cells, scenario, t.id); return c === undefined ? '-' : pick(c) })]
  const medians = table(['median', ...shown.map((t) => t.label)], [
    row('S1 MiB/s', 's1', (c) => int(c.throughput)),
    row('S2 req/s', 's2', (c) => int(c.throughput)),
    row('S3 MiB/s', 's3', (c) => int(c.throughput)),
    row('CPU s/GiB in S1', 's1', (c) => num(c.cpuSecondsPerGiB, 2)),
    row('CPU us/req in S2', 's2', (c) => num(c.cpuMicrosPerRequest, 1)),
    row('peak RSS MiB under S2', 's2', (c) => fixed(c.peakRssMiB, 1)),
    row('CPU s/GiB in S3', 's3', (c) => num(c.cpuSecondsPerGiB, 2)),
    row('peak RSS MiB under S1', 's1', (c) => fixed(c.peakRssMiB, 1)),
    row('peak RSS MiB under S3', 's3', (c) => fixed(c.peakRssMiB, 1)),
    row('errors S1 (all rounds)', 's1', (c) => int(c.errors)),
    row('errors S2 (all rounds)', 's2', (c) => int(c.errors)),
    row('errors S3 (all rounds)', 's3', (c) => int(c.errors))
  ])
  const ratioRows = ratios(cells, targets).map((r) => [
    r.spec.label,
    r.ratio === undefined ? 'n/a' : `x${fixed(r.ratio)}`,
    r.paired === undefined ? 'n/a' : `x${fixed(r.paired)}`,
    r.spec.max === undefined ? `>= ${fixed(r.spec.min)}` : `${fixed(r.spec.min)}..${fixed(r.spec.max)}`,
    verdict(r.meets)
  ])
  const limitRows = limits(cells, targets).map((l) => [l.label, l.value === undefined ? 'n/a' : num(l.value, 2), '', l.limit, verdict(l.meets)])
  const against = table(['streammeter vs', 'ratio of medians', 'paired', 'target', ''], [...ratioRows, ...limitRows])
  return `${medians}\n\n${against}`
}
