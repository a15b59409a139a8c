import { fileURLToPath } from 'node:url'
import { lastJsonLine, runNode } from './lib/child.ts'
import { fixed, int, median, table } from './lib/format.ts'
import { describeMachine } from './lib/machine.ts'
import type { MachineInfo } from './lib/machine.ts'
import { RESULTS_DIR, writeResults } from './lib/results.ts'
import { EVENTS, PYTHON_REFERENCE, ROUNDS, SCENARIOS, TARGETS, WARMUP_ROUNDS } from './record-scenarios.ts'
import type { RecordScenario, ScenarioResult } from './record-scenarios.ts'

/**
 * The `record()` benchmark: one child process per scenario
 * (src/record-bench.ts), then a table against the targets and a JSON file in
 * bench/results/.
 */

const BENCH_ROOT = fileURLToPath(new URL('..', import.meta.url))
const CHILD = fileURLToPath(new URL('./record-bench.ts', import.meta.url))
const CHILD_EXEC_ARGV = ['--expose-gc', '--import', 'tsx'] as const

/** A scenario as run: the child's result, or why there is none. */
interface ScenarioRun {
  scenario: RecordScenario
  result: ScenarioResult | undefined
  /** Child exit code (1: a check failed; other non-zero: it crashed). */
  exitCode: number | null
  medianMEventsPerSec: number | undefined
  medianMEventsPerCpuSec: number | undefined
  medianBytesPerUid: number | undefined
  meetsThroughput: boolean | undefined
  meetsMemory: boolean | undefined
  /** Every check in every round passed. */
  ok: boolean
}

/** Run the given scenarios (all when `ids` is empty); resolves false when a check failed or a child crashed. */
export async function runRecordSuite (ids: readonly string[] = []): Promise<boolean> {
  const unknown = ids.filter((id) => !SCENARIOS.some((s) => s.id === id))
  if (unknown.length > 0) {
    process.stderr.write(`unknown record scenario: ${unknown.join(', ')} (have ${SCENARIOS.map((s) => s.id).join(', ')})\n`)
    return false
  }
  const selected = ids.length === 0 ? SCENARIOS : SCENARIOS.filter((s) => ids.includes(s.id))
  const machine = describeMachine()
  process.stderr.write(`${header(machine)}\n\n`)

  const runs: ScenarioRun[] = []
  for (const scenario of selected) runs.push(await runScenario(scenario))

  process.stdout.write(`\n${report(runs, machine)}\n`)
  const ok = runs.every((r) => r.ok)
  const path = writeResults('record', {
    suite: 'record',
    createdAt: new Date().toISOString(),
    machine,
    config: { events: EVENTS, warmupRounds: WARMUP_ROUNDS, rounds: ROUNDS, targets: TARGETS, pythonReference: PYTHON_REFERENCE },
    ok,
    scenarios: runs
  })
  process.stdout.write(`\nresults: ${path.startsWith(RESULTS_DIR) ? `bench/results/${path.slice(RESULTS_DIR.length)}` : path}\n`)
  return ok
}

async function runScenario (scenario: RecordScenario): Promise<ScenarioRun> {
  const child = await runNode(CHILD, [scenario.id], { execArgv: CHILD_EXEC_ARGV, cwd: BENCH_ROOT })
  const parsed = lastJsonLine(child.stdout)
  const result = isScenarioResult(parsed) && parsed.scenario === scenario.id ? parsed : undefined
  const rounds = result?.rounds ?? []
  const mEventsPerSec = rounds.length > 0 ? median(rounds.map((r) => r.mEventsPerSec)) : undefined
  const mEventsPerCpuSec = rounds.length > 0 ? median(rounds.map((r) => r.mEventsPerCpuSec)) : undefined
  const bytesPerUid = rounds.length > 0 ? median(rounds.map((r) => r.bytesPerUid)) : undefined
  return {
    scenario,
    result,
    exitCode: child.code,
    medianMEventsPerSec: mEventsPerSec,
    medianMEventsPerCpuSec: mEventsPerCpuSec,
    medianBytesPerUid: bytesPerUid,
    meetsThroughput: meets(mEventsPerSec, scenario.minMEventsPerSec, (v, t) => v >= t),
    meetsMemory: meets(bytesPerUid, scenario.maxBytesPerUid, (v, t) => v <= t),
    ok: child.code === 0 && result !== undefined && [...result.warmup, ...rounds].every((r) => r.ok)
  }
}

function meets (value: number | undefined, target: number | undefined, test: (v: number, t: number) => boolean): boolean | undefined {
  return value === undefined || target === undefined ? undefined : test(value, target)
}

function isScenarioResult (v: unknown): v is ScenarioResult {
  if (typeof v !== 'object' || v === null) return false
  const r = v as Partial<ScenarioResult>
  return typeof r.scenario === 'string' && Array.isArray(r.rounds) && Array.isArray(r.warmup)
}

function header (m: MachineInfo): string {
  return [
    `record() benchmark: ${int(EVENTS)} events per round, ${WARMUP_ROUNDS} warm-up + ${ROUNDS} timed rounds per scenario, ` +
      'each scenario in a fresh process, a fresh collector per round',
    `node ${m.node} (V8 ${m.v8}), ${m.platform}/${m.arch}, ${m.cpu} x${m.cpus}, ${m.memoryGiB} GiB; ` +
      `random load over 64 MiB: ${fixed(m.randomLoadNs, 0)} ns; load average ${fixed(m.loadAverage)}`
  ].join('\n')
}

function times (ratio: number): string {
  return `x${ratio < 10 ? fixed(ratio, 1) : int(ratio)}`
}

function verdict (ok: boolean | undefined): string {
  return ok === undefined ? '' : ok ? 'OK' : 'MISS'
}

function report (runs: readonly ScenarioRun[], machine: MachineInfo): string {
  const out: string[] = [header(machine), '']
  out.push(table(
    ['throughput', 'rounds (M events/s)', 'median', 'target', '', 'vs Python', 'per CPU-s'],
    runs.map((r) => [
      r.scenario.label,
      (r.result?.rounds ?? []).map((x) => fixed(x.mEventsPerSec)).join(' '),
      r.medianMEventsPerSec === undefined ? 'n/a' : fixed(r.medianMEventsPerSec),
      r.scenario.minMEventsPerSec === undefined ? '-' : `>= ${r.scenario.minMEventsPerSec}`,
      verdict(r.meetsThroughput),
      r.scenario.pythonMEventsPerSec === undefined || r.medianMEventsPerSec === undefined
        ? ''
        : times(r.medianMEventsPerSec / r.scenario.pythonMEventsPerSec),
      r.medianMEventsPerCpuSec === undefined ? 'n/a' : fixed(r.medianMEventsPerCpuSec)
    ])
  ))
  out.push('')
  out.push(table(
    ['memory per tracked uid', 'rounds (B/uid)', 'median', 'target', '', 'uids', 'uid/IP/session strings'],
    runs.map((r) => [
      r.scenario.label,
      (r.result?.rounds ?? []).map((x) => fixed(x.bytesPerUid, 0)).join(' '),
      r.medianBytesPerUid === undefined ? 'n/a' : fixed(r.medianBytesPerUid, 1),
      r.scenario.maxBytesPerUid === undefined ? '-' : `<= ${r.scenario.maxBytesPerUid}`,
      verdict(r.meetsMemory),
      int(r.result?.rounds.at(-1)?.trackedUids ?? 0),
      r.scenario.strings === 'shared' ? 'shared with input: NOT counted' : 'kept only by collector: counted'
    ])
  ))
  out.push('')
  out.push(
    'B/uid: (heapUsed + arrayBuffers after the loop - before) / uids the collector holds, both after a full GC;',
    '  "before" is taken once the input events and strings exist. With shared strings the uid, IP and session',
    '  strings the collector keeps ARE the input strings, so they are not counted; the "strings made in the loop"',
    '  row creates them per event and only the collector keeps them, so they are counted (its throughput includes',
    '  making them and is not held to a target).',
    'M events/s: wall time of the loop; "per CPU-s": the median per second of process CPU time (all threads),',
    '  which other work on the machine distorts less. Targets apply to wall time.',
    '"time from clock": events carry no `time`; the collector reads Date.now() per event (the server\'s default path).',
    `Python collector (reference): ${PYTHON_REFERENCE.mEventsPerSec10kUids} M/s at 10k uids, ` +
      `${PYTHON_REFERENCE.mEventsPerSec1mUids} M/s at 1M uids.`,
    ''
  )
  for (const r of runs) out.push(`check ${r.scenario.id}: ${checkLine(r)}`)
  return out.join('\n')
}

function checkLine (r: ScenarioRun): string {
  if (r.result === undefined) return `FAIL (child exited with ${String(r.exitCode)} and no result)`
  const all = [...r.result.warmup, ...r.result.rounds]
  const problems = all.flatMap((x) => x.problems)
  const stored = all.some((x) => x.storeChecked)
  if (!r.ok) return `FAIL: ${problems.join('; ') || `child exited with ${String(r.exitCode)}`}`
  return `OK (counters = generated in all ${all.length} rounds` +
    `${stored ? `; after flush the store holds exactly the ${int(r.result.generatedBytes)} generated bytes` : ''})`
}
