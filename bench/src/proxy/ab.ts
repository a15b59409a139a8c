import { fixed, int, median, table } from '../lib/format.ts'
import { AB_PAIRS, SCENARIOS } from './plan.ts'
import type { ScenarioId, TargetId } from './plan.ts'
import { cell, throughput } from './summary.ts'
import type { CellSummary, Sample } from './summary.ts'

/**
 * An A/B run (`--base <ref>`): streammeter built from the working tree
 * ("current") against streammeter built from `<ref>` ("base"), both set up
 * alike and measured in the same shuffled rounds. For each scenario and
 * origin, the ratio current/base of the medians and, since each round runs
 * both close together in time, the median of the per-round ratios (the
 * paired figure, which other work on the machine disturbs less), with the
 * spread of those per-round ratios: a difference inside it is noise.
 */

const MIB = 2 ** 20
const GIB = 2 ** 30

/** The figures compared, per scenario. */
type Metric = 'throughput' | 'cpu' | 'peakRss'

/** One compared figure of one scenario and origin. */
export interface AbFigure {
  scenario: ScenarioId
  /** `http origin` or `fs origin` (see AB_PAIRS). */
  origin: string
  metric: Metric
  /** What it is, in its unit: `S2 req/s`, `S1 CPU s/GiB`, … */
  label: string
  /** Medians over the timed rounds, as in the table of medians. */
  current: number
  base: number
  /** current / base of the medians. */
  ratio: number
  /** Median, lowest and highest of the per-round ratios current / base (undefined without a round of both). */
  paired: number | undefined
  pairedMin: number | undefined
  pairedMax: number | undefined
  rounds: number
}

/** Every figure of every scenario the run measured, in the order S1, S2, S3; within each, throughput, CPU, RSS. */
export function abFigures (cells: readonly CellSummary[], samples: readonly Sample[]): AbFigure[] {
  const out: AbFigure[] = []
  for (const sc of [...SCENARIOS].sort((a, b) => a.id.localeCompare(b.id))) {
    for (const metric of ['throughput', 'cpu', 'peakRss'] as const) {
      for (const pair of AB_PAIRS) {
        const a = cell(cells, sc.id, pair.current)
        const b = cell(cells, sc.id, pair.base)
        if (a === undefined || b === undefined) continue
        const current = cellFigure(a, metric)
        const base = cellFigure(b, metric)
        const perRound = roundRatios(samples, sc.id, pair.current, pair.base, metric)
        out.push({
          scenario: sc.id,
          origin: pair.label,
          metric,
          label: `${sc.id.toUpperCase()} ${metricLabel(sc.id, metric)}`,
          current,
          base,
          ratio: current / base,
          paired: perRound.length === 0 ? undefined : median(perRound),
          pairedMin: perRound.length === 0 ? undefined : Math.min(...perRound),
          pairedMax: perRound.length === 0 ? undefined : Math.max(...perRound),
          rounds: perRound.length
        })
      }
    }
  }
  return out
}

function unitOf (scenario: ScenarioId): 'MiB/s' | 'req/s' {
  return SCENARIOS.find((s) => s.id === scenario)?.unit ?? 'MiB/s'
}

function metricLabel (scenario: ScenarioId, metric: Metric): string {
  const perRequest = unitOf(scenario) === 'req/s'
  switch (metric) {
    case 'throughput': return unitOf(scenario)
    case 'cpu': return perRequest ? 'CPU us/req' : 'CPU s/GiB'
    case 'peakRss': return 'peak RSS MiB'
  }
}

/** The cell's median of `metric`: CPU per request for the req/s scenario (S2), per GiB for the others, as the table of medians shows. */
function cellFigure (c: CellSummary, metric: Metric): number {
  switch (metric) {
    case 'throughput': return c.throughput
    case 'cpu': return unitOf(c.scenario) === 'req/s' ? c.cpuMicrosPerRequest : c.cpuSecondsPerGiB
    case 'peakRss': return c.peakRssMiB
  }
}

/** `metric` of one run, with the definitions of summarize(); NaN when the run delivered nothing to divide by. */
function sampleFigure (s: Sample, metric: Metric): number {
  switch (metric) {
    case 'throughput': return throughput(s)
    case 'cpu':
      if (unitOf(s.scenario) === 'req/s') return s.wrk.requests > 0 ? s.cpuSeconds * 1e6 / s.wrk.requests : Number.NaN
      return s.wrk.bytes > 0 ? s.cpuSeconds / (s.wrk.bytes / GIB) : Number.NaN
    case 'peakRss': return s.peakRssBytes / MIB
  }
}

/** current / base of each timed round that has a usable run of both. */
function roundRatios (samples: readonly Sample[], scenario: ScenarioId, current: TargetId, base: TargetId, metric: Metric): number[] {
  const timed = samples.filter((s) => s.scenario === scenario && s.round > 0)
  const out: number[] = []
  for (const a of timed.filter((s) => s.target === current)) {
    const b = timed.find((s) => s.target === base && s.round === a.round)
    if (b === undefined) continue
    const r = sampleFigure(a, metric) / sampleFigure(b, metric)
    if (Number.isFinite(r)) out.push(r)
  }
  return out
}

/** The A/B table, under a note on how to read it (the header above it says which builds). */
export function renderAb (figures: readonly AbFigure[]): string {
  const value = (f: AbFigure, n: number): string => Number.isNaN(n)
    ? 'n/a'
    : f.metric === 'throughput' ? int(n) : fixed(n, f.metric === 'peakRss' || unitOf(f.scenario) === 'req/s' ? 1 : 2)
  const ratio = (n: number | undefined): string => n === undefined || !Number.isFinite(n) ? 'n/a' : `x${fixed(n, 3)}`
  const rows = figures.map((f) => [
    f.label,
    f.origin,
    value(f, f.current),
    value(f, f.base),
    ratio(f.ratio),
    ratio(f.paired),
    f.pairedMin === undefined || f.pairedMax === undefined ? 'n/a' : `${fixed(f.pairedMin, 3)}..${fixed(f.pairedMax, 3)}`
  ])
  return [
    table(['A/B: medians', 'origin', 'current', 'base', 'current/base', 'paired', 'per round'], rows),
    'current/base above 1: more throughput, or more CPU or memory, than base. paired: the median of the per-round ratios;',
    'per round: their lowest and highest. A difference within that spread is noise.'
  ].join('\n')
}
