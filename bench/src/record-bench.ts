/**
 * One scenario of the `record()` benchmark, in a process of its own so that
 * no other scenario's garbage or JIT state pollutes the numbers:
 *
 *   node --expose-gc --import tsx src/record-bench.ts <scenario>
 *
 * Progress goes to stderr, the result to stdout as one JSON line
 * ({@link ScenarioResult}). Exits 1 when a check fails.
 *
 * Checks: after every round, the collector's own counters (events and bytes
 * recorded, uids held, no early flush, nothing ignored); after the last round,
 * also `flush()` into the MemoryStore and compare the store's totals with the
 * generated ones. (Flushing and reading back 1M records takes several seconds,
 * hence once per run.)
 */
import { performance } from 'node:perf_hooks'
import { TrafficCollector, policyOf, resolveMeterOptions } from '../../src/meter/index.ts'
import type { MeterOptions, TrafficEvent } from '../../src/meter/index.ts'
import { MemoryStore } from '../../src/store/memory-store.ts'
import { fixed, int } from './lib/format.ts'
import { requireGc, settledHeapBytes } from './lib/heap.ts'
import {
  FILE_TYPE_ROTATION, FIRST_EVENT_TIME, ipString, makeByteSizes, makeSharedInput, sessionString, sumOf, uidString
} from './record-input.ts'
import { ROUNDS, SCENARIOS, WARMUP_ROUNDS, scenarioById } from './record-scenarios.ts'
import type { RecordScenario, RoundResult, ScenarioResult } from './record-scenarios.ts'

const OPTIONS: Readonly<Partial<MeterOptions>> = Object.freeze({
  // Far above any scenario's uids: nothing may flush during the timed loop.
  // (`start()` is never called either, so no timer flushes.)
  flushMaxUids: 10_000_000,
  workerId: 'bench'
})

/** Record every prepared event. One call site, one event shape: as in the server. */
function recordShared (collector: TrafficCollector, events: readonly TrafficEvent[]): void {
  for (const event of events) collector.record(event)
}

/** Make each event and its strings just before recording it; only the collector keeps them. */
function recordOwned (collector: TrafficCollector, sizes: Float64Array, uids: number, withTime: boolean): void {
  for (let k = 0; k < sizes.length; k++) {
    const n = k % uids
    const uid = uidString(n)
    const bytes = sizes[k] as number
    const fileType = FILE_TYPE_ROTATION[k % FILE_TYPE_ROTATION.length] as string
    const ip = ipString(n)
    const sessionId = sessionString(n)
    collector.record(withTime
      ? { uid, bytes, fileType, ip, sessionId, time: FIRST_EVENT_TIME + k }
      : { uid, bytes, fileType, ip, sessionId })
  }
}

interface RoundInput {
  scenario: RecordScenario
  /** Flush into the store and compare its totals (slow at 1M uids). */
  checkStore: boolean
  /** Prepared events (`shared` strings), or undefined to make them in the loop. */
  events: readonly TrafficEvent[] | undefined
  sizes: Float64Array
  generatedBytes: number
  gc: () => void
}

async function measureRound ({ scenario, checkStore, events, sizes, generatedBytes, gc }: RoundInput): Promise<RoundResult> {
  const options = resolveMeterOptions(OPTIONS)
  const before = settledHeapBytes(gc)
  const store = new MemoryStore(policyOf(options))
  const collector = new TrafficCollector(options, { store })

  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  if (events !== undefined) recordShared(collector, events)
  else recordOwned(collector, sizes, scenario.uids, scenario.time === 'explicit')
  const ms = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  const cpuMs = (cpu.user + cpu.system) / 1000

  const heapDeltaBytes = settledHeapBytes(gc) - before
  const status = await collector.status(0)
  const stats = status.statistics
  const trackedUids = status.current_state.unflushed_uids

  // Correctness, outside the timing.
  const problems: string[] = []
  const expectedUids = Math.min(scenario.uids, scenario.events)
  if (trackedUids !== expectedUids) problems.push(`holds ${trackedUids} uids, expected ${expectedUids}`)
  if (stats.events_recorded !== scenario.events) problems.push(`recorded ${stats.events_recorded} events of ${scenario.events}`)
  if (stats.bytes_recorded !== generatedBytes) problems.push(`recorded ${stats.bytes_recorded} bytes, generated ${generatedBytes}`)
  if (stats.early_flushes !== 0) problems.push(`${stats.early_flushes} early flushes during the loop`)
  if (stats.events_ignored !== 0) problems.push(`${stats.events_ignored} events ignored`)
  let storeChecked = false
  if (checkStore) {
    await collector.flush()
    let storedBytes = 0
    let storedRequests = 0
    for (const r of await store.records()) {
      storedBytes += r.bytes
      storedRequests += r.requests
    }
    if (storedBytes !== generatedBytes) problems.push(`store holds ${storedBytes} bytes, generated ${generatedBytes}`)
    if (storedRequests !== scenario.events) problems.push(`store counts ${storedRequests} requests, generated ${scenario.events}`)
    storeChecked = true
  }

  return {
    ms,
    mEventsPerSec: scenario.events / ms / 1000,
    cpuMs,
    mEventsPerCpuSec: scenario.events / cpuMs / 1000,
    heapDeltaBytes,
    trackedUids,
    bytesPerUid: trackedUids > 0 ? heapDeltaBytes / trackedUids : 0,
    storeChecked,
    ok: problems.length === 0,
    problems
  }
}

function describeRound (label: string, r: RoundResult): string {
  const what = r.storeChecked ? 'counters and store totals = generated' : 'counters = generated'
  const check = r.ok ? `${what}: OK` : `FAIL: ${r.problems.join('; ')}`
  return `${label}: ${fixed(r.mEventsPerSec)} M events/s (${fixed(r.ms, 1)} ms; CPU ${fixed(r.cpuMs, 1)} ms), ` +
    `${fixed(r.bytesPerUid, 1)} B/uid over ${int(r.trackedUids)} uids, ${check}`
}

async function main (): Promise<number> {
  const scenario = scenarioById(process.argv[2])
  if (scenario === undefined) {
    process.stderr.write(`usage: node --expose-gc --import tsx src/record-bench.ts <${SCENARIOS.map((s) => s.id).join('|')}>\n`)
    return 2
  }
  const gc = requireGc()
  const sizes = makeByteSizes(scenario.events)
  const generatedBytes = sumOf(sizes)
  // Made before any heap is measured: not counted (the collector keeps these very strings).
  const events = scenario.strings === 'shared'
    ? makeSharedInput(scenario.events, scenario.uids, scenario.time === 'explicit', sizes).events
    : undefined
  const strings = scenario.strings === 'shared'
    ? 'input strings shared with the caller, NOT counted in B/uid'
    : 'strings made in the loop and kept only by the collector, counted in B/uid'
  process.stderr.write(`[${scenario.id}] ${scenario.label}; ${strings}\n`)

  const result: ScenarioResult = { scenario: scenario.id, warmup: [], rounds: [], generatedBytes, generatedEvents: scenario.events }
  const total = WARMUP_ROUNDS + ROUNDS
  for (let i = 1; i <= total; i++) {
    const round = await measureRound({ scenario, checkStore: i === total, events, sizes, generatedBytes, gc })
    const warm = i <= WARMUP_ROUNDS
    ;(warm ? result.warmup : result.rounds).push(round)
    const label = warm ? `warm-up ${i}` : `round ${i - WARMUP_ROUNDS}/${ROUNDS}`
    process.stderr.write(`[${scenario.id}] ${describeRound(label, round)}\n`)
  }
  process.stdout.write(JSON.stringify(result) + '\n')
  return [...result.warmup, ...result.rounds].every((r) => r.ok) ? 0 : 1
}

process.exitCode = await main()
