import { fixed, int, median, table } from '../lib/format.ts'
import { ENGINE_COMPARISONS, ENGINE_TARGETS, LIMITS, RATIOS, SCENARIOS, TARGETS } from './plan.ts'
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
  /**
   * utime + stime of the target's processes over the run (the nginx engine:
   * streammeter and its nginx's master and workers, until streammeter has
   * read the run's access-log lines).
   */
  cpuSeconds: number
  /** The nginx engine only: the part of {@link cpuSeconds} that is streammeter's own process. */
  ownCpuSeconds?: number
  /** VmHWM after the run, reset just before it (summed over the target's processes). */
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
  /** CPU per GiB (S1, S3) or µs per request (S2) of each timed round, in round order (NaN for a round without either). */
  cpuPerRound: number[]
  /**
   * The nginx engine only: streammeter's own CPU time over a run divided by
   * wrk's duration (the share of one core its process needs to keep up with
   * that load), median over the rounds.
   */
  ownCpuShare?: number
}

/** CPU per GiB (S1, S3) or µs per request (S2) of one run, as the table of medians shows it; NaN when the run delivered nothing. */
export function cpuFigure (s: Sample): number {
  const perRequest = SCENARIOS.find((x) => x.id === s.scenario)?.unit === 'req/s'
  if (perRequest) return s.wrk.requests > 0 ? s.cpuSeconds * 1e6 / s.wrk.requests : Number.NaN
  return s.wrk.bytes > 0 ? s.cpuSeconds / (s.wrk.bytes / GIB) : Number.NaN
}

/** Per scenario, one summary per target of `targets` (the run's, in table order) that was measured in it. */
export function summarize (samples: readonly Sample[], targets: readonly TargetSpec[] = TARGETS): CellSummary[] {
  const out: CellSummary[] = []
  for (const sc of SCENARIOS) {
    for (const t of targets) {
      const timed = samples.filter((s) => s.scenario === sc.id && s.target === t.id && s.round > 0).sort((a, b) => a.round - b.round)
      if (timed.length === 0) continue
      const own = timed.filter((s) => s.ownCpuSeconds !== undefined && s.wrk.durationUs > 0).map((s) => (s.ownCpuSeconds as number) / (s.wrk.durationUs / 1e6))
      out.push({
        scenario: sc.id,
        target: t.id,
        rounds: timed.length,
        throughput: median(timed.map(throughput)),
        cpuSecondsPerGiB: medianOrNaN(timed.filter((s) => s.wrk.bytes > 0).map((s) => s.cpuSeconds / (s.wrk.bytes / GIB))),
        cpuMicrosPerRequest: medianOrNaN(timed.filter((s) => s.wrk.requests > 0).map((s) => s.cpuSeconds * 1e6 / s.wrk.requests)),
        peakRssMiB: median(timed.map((s) => s.peakRssBytes / MIB)),
        errors: timed.reduce((n, s) => n + errorCount(s), 0),
        perRound: timed.map(throughput),
        cpuPerRound: timed.map(cpuFigure),
        ...(own.length === 0 ? {} : { ownCpuShare: median(own) })
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
    const cpu = spec.metric === 'cpu'
    const figure = (c: CellSummary): number => cpu ? cellCpu(c) : c.throughput
    if (a === undefined || b === undefined || !(figure(b) > 0) || Number.isNaN(figure(a))) return { spec, ratio: undefined, paired: undefined, meets: undefined }
    const ratio = figure(a) / figure(b)
    const paired = pairedRatio(cpu ? a.cpuPerRound : a.perRound, cpu ? b.cpuPerRound : b.perRound)
    return { spec, ratio, paired, meets: (spec.min === undefined || ratio >= spec.min) && (spec.max === undefined || ratio <= spec.max) }
  })
}

/** The cell's median CPU per GiB (S1, S3) or per request (S2). */
export function cellCpu (c: CellSummary): number {
  return SCENARIOS.find((x) => x.id === c.scenario)?.unit === 'req/s' ? c.cpuMicrosPerRequest : c.cpuSecondsPerGiB
}

/** The median of the per-round ratios a/b (rounds in the same order), over the rounds where both are numbers. */
function pairedRatio (a: readonly number[], b: readonly number[]): number | undefined {
  const r: number[] = []
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = (a[i] as number) / (b[i] as number)
    if (Number.isFinite(x)) r.push(x)
  }
  return r.length === 0 ? undefined : median(r)
}

/** An absolute limit on a metered streammeter target. */
export interface LimitResult {
  label: string
  value: number | undefined
  limit: string
  meets: boolean | undefined
}

/**
 * The limits of each metered target of `targets` (the run's): {@link LIMITS}
 * for the node engine; for the nginx engine, streammeter's own share of a
 * core under S2.
 */
export function limits (cells: readonly CellSummary[], targets: readonly TargetSpec[] = TARGETS): LimitResult[] {
  const out: LimitResult[] = []
  // The access targets are held to their ratios against the signed-URL target instead.
  for (const t of targets.filter((x) => x.metered && x.access === undefined)) {
    if (t.engine === 'nginx') {
      const share = cell(cells, 's2', t.id)?.ownCpuShare
      const max = ENGINE_TARGETS.ownCpuShareS2
      out.push({ label: `${t.label}: streammeter's own CPU under S2, % of a core`, value: share === undefined ? undefined : share * 100, limit: `<= ${fixed(max * 100, 0)}`, meets: share === undefined ? undefined : share <= max })
      continue
    }
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
    row('errors S3 (all rounds)', 's3', (c) => int(c.errors)),
    ...(cells.some((c) => c.ownCpuShare !== undefined)
      ? (['s1', 's2', 's3'] as const).map((sc) => row(`streammeter's own CPU % in ${sc.toUpperCase()}`, sc, (c) => c.ownCpuShare === undefined ? '-' : fixed(c.ownCpuShare * 100, 1)))
      : [])
  ])
  const ratioRows = ratios(cells, targets).map((r) => [
    r.spec.label,
    r.ratio === undefined ? 'n/a' : `x${fixed(r.ratio)}`,
    r.paired === undefined ? 'n/a' : `x${fixed(r.paired)}`,
    band(r.spec),
    // A ratio without a target says nothing of meeting one.
    r.spec.min === undefined && r.spec.max === undefined ? '' : verdict(r.meets)
  ])
  const limitRows = limits(cells, targets).map((l) => [l.label, l.value === undefined ? 'n/a' : num(l.value, 2), '', l.limit, verdict(l.meets)])
  const against = table(['streammeter vs', 'ratio of medians', 'paired', 'target', ''], [...ratioRows, ...limitRows])
  return `${medians}\n\n${against}`
}

/** A ratio's target as text: `>= 0.90`, `<= 1.15` or `0.95..1.05`. */
function band (spec: RatioSpec): string {
  if (spec.min !== undefined && spec.max !== undefined) return `${fixed(spec.min)}..${fixed(spec.max)}`
  return spec.min !== undefined ? `>= ${fixed(spec.min)}` : spec.max !== undefined ? `<= ${fixed(spec.max)}` : ''
}

/** One row of the engines table (see {@link engineRows}). */
export interface EngineRow {
  scenario: ScenarioId
  origin: string
  /** `S2 req/s`, `S1 CPU s/GiB`, … */
  figure: string
  /** Medians: nginx alone, the nginx engine, the node engine (undefined when not in the run). */
  baseline: number | undefined
  nginxEngine: number | undefined
  nodeEngine: number | undefined
  /** The nginx engine's ratio to nginx alone (of medians, and paired), its target, and whether it meets it. */
  ratio: number | undefined
  paired: number | undefined
  target: string
  meets: boolean | undefined
  /** The node engine's ratio to nginx alone, for comparison (no target here). */
  nodeRatio: number | undefined
}

/**
 * The nginx engine and the node engine side by side, each against nginx
 * doing the same work alone, per scenario and origin: throughput and CPU
 * ({@link ENGINE_COMPARISONS}, {@link ENGINE_TARGETS}). Only rows whose
 * nginx engine target ran.
 */
export function engineRows (cells: readonly CellSummary[], targets: readonly TargetSpec[] = TARGETS): EngineRow[] {
  const results = ratios(cells, targets)
  const out: EngineRow[] = []
  for (const sc of [...SCENARIOS].sort((a, b) => a.id.localeCompare(b.id))) {
    for (const metric of ['throughput', 'cpu'] as const) {
      for (const c of ENGINE_COMPARISONS) {
        const base = cell(cells, sc.id, c.baseline)
        const ngx = cell(cells, sc.id, c.nginxEngine)
        const node = cell(cells, sc.id, c.nodeEngine)
        if (ngx === undefined) continue
        const pick = (x: CellSummary | undefined): number | undefined => x === undefined ? undefined : metric === 'cpu' ? cellCpu(x) : x.throughput
        const r = results.find((x) => x.spec.scenario === sc.id && x.spec.numerator === c.nginxEngine && x.spec.denominator === c.baseline && (x.spec.metric ?? 'throughput') === metric)
        const b = pick(base)
        const n = pick(node)
        out.push({
          scenario: sc.id,
          origin: c.origin,
          figure: `${sc.id.toUpperCase()} ${metric === 'throughput' ? sc.unit : sc.unit === 'req/s' ? 'CPU us/req' : 'CPU s/GiB'}`,
          baseline: b,
          nginxEngine: pick(ngx),
          nodeEngine: n,
          ratio: r?.ratio,
          paired: r?.paired,
          target: r === undefined ? '' : band(r.spec),
          meets: r?.meets,
          nodeRatio: b === undefined || n === undefined || !(b > 0) ? undefined : n / b
        })
      }
    }
  }
  return out
}

/** The engines table: {@link engineRows}, with streammeter's own CPU under the nginx engine below. */
export function renderEngines (cells: readonly CellSummary[], targets: readonly TargetSpec[] = TARGETS): string {
  const rows = engineRows(cells, targets)
  if (rows.length === 0) return ''
  const value = (r: EngineRow, n: number | undefined): string => n === undefined || Number.isNaN(n)
    ? '-'
    : r.figure.endsWith('/s') ? int(n) : fixed(n, r.figure.endsWith('us/req') ? 1 : 2)
  const ratio = (n: number | undefined): string => n === undefined || !Number.isFinite(n) ? '-' : `x${fixed(n)}`
  const body = rows.map((r) => [
    `${r.figure}, ${r.origin}`,
    value(r, r.baseline),
    value(r, r.nginxEngine),
    ratio(r.ratio),
    ratio(r.paired),
    r.target,
    verdict(r.meets),
    value(r, r.nodeEngine),
    ratio(r.nodeRatio)
  ])
  const own = limits(cells, targets).filter((l) => l.label.includes('own CPU')).map((l) => `${verdict(l.meets)} ${l.label}: ${l.value === undefined ? 'n/a' : fixed(l.value, 1)} (target ${l.limit})`)
  return [
    table(['engines, medians', 'nginx alone', 'nginx engine', 'ratio', 'paired', 'target', '', 'node engine', 'ratio'], body),
    'nginx alone: nginx proxy_pass (http origin) or nginx static (fs origin). nginx engine: streammeter-nginx, CPU of nginx and',
    'streammeter together. node engine: streammeter http or fs. ratio: to nginx alone (CPU: lower is better).',
    ...own
  ].join('\n')
}
