/**
 * What the `record()` benchmark measures and what it must reach. Shared by the
 * runner (which prints and saves) and the child process (which measures).
 */

/** Events recorded per round. */
export const EVENTS = 1_000_000
/** Untimed rounds first, so that the loop and `record()` are optimised before we time them. */
export const WARMUP_ROUNDS = 1
/** Timed rounds; the median is reported. */
export const ROUNDS = 5

/** Throughput and memory the collector must reach (bench/README.md#what-the-numbers-mean). */
export const TARGETS = Object.freeze({
  mEventsPerSec10kUids: 5.6, // M events/s, 10k uids
  mEventsPerSec1mUids: 2, // M events/s, 1M uids
  bytesPerUid: 250 // bytes per tracked uid
})

/** The collector this service replaces, measured the same way (for scale only). */
export const PYTHON_REFERENCE = Object.freeze({
  mEventsPerSec10kUids: 0.28, // M events/s
  mEventsPerSec1mUids: 0.006 // M events/s
})

/** One child process's worth of measurement. */
export interface RecordScenario {
  /** The child's command-line argument. */
  readonly id: string
  readonly label: string
  readonly events: number
  /** Distinct uids; event `k` goes to uid `k % uids`. */
  readonly uids: number
  /**
   * `explicit`: every event carries `time`. `clock`: `time` is omitted and the
   * collector reads its default clock (`Date.now()`), as the server does.
   */
  readonly time: 'explicit' | 'clock'
  /**
   * `shared`: uid/IP/session strings and events are made before the heap is
   * measured, so the strings the collector keeps are the caller's and are not
   * counted. `owned`: they are made inside the timed loop and only the
   * collector keeps them, so they are counted (and so is making them, in the
   * time).
   */
  readonly strings: 'shared' | 'owned'
  /** Minimum median throughput, M events/s. */
  readonly minMEventsPerSec?: number | undefined
  /** Maximum median heap growth per tracked uid, bytes. */
  readonly maxBytesPerUid?: number | undefined
  /** The Python collector's throughput in the same situation, M events/s. */
  readonly pythonMEventsPerSec?: number | undefined
}

export const SCENARIOS: readonly RecordScenario[] = Object.freeze([
  {
    id: '10k',
    label: '1M events / 10k uids',
    events: EVENTS,
    uids: 10_000,
    time: 'explicit',
    strings: 'shared',
    minMEventsPerSec: TARGETS.mEventsPerSec10kUids,
    pythonMEventsPerSec: PYTHON_REFERENCE.mEventsPerSec10kUids
  },
  {
    id: '10k-clock',
    label: '1M events / 10k uids, time from clock',
    events: EVENTS,
    uids: 10_000,
    time: 'clock',
    strings: 'shared',
    minMEventsPerSec: TARGETS.mEventsPerSec10kUids,
    pythonMEventsPerSec: PYTHON_REFERENCE.mEventsPerSec10kUids
  },
  {
    id: '1m',
    label: '1M events / 1M uids',
    events: EVENTS,
    uids: 1_000_000,
    time: 'explicit',
    strings: 'shared',
    minMEventsPerSec: TARGETS.mEventsPerSec1mUids,
    maxBytesPerUid: TARGETS.bytesPerUid,
    pythonMEventsPerSec: PYTHON_REFERENCE.mEventsPerSec1mUids
  },
  {
    id: '1m-clock',
    label: '1M events / 1M uids, time from clock',
    events: EVENTS,
    uids: 1_000_000,
    time: 'clock',
    strings: 'shared',
    minMEventsPerSec: TARGETS.mEventsPerSec1mUids,
    maxBytesPerUid: TARGETS.bytesPerUid,
    pythonMEventsPerSec: PYTHON_REFERENCE.mEventsPerSec1mUids
  },
  {
    id: '1m-owned',
    label: '1M events / 1M uids, strings made in the loop',
    events: EVENTS,
    uids: 1_000_000,
    time: 'explicit',
    strings: 'owned',
    maxBytesPerUid: TARGETS.bytesPerUid
  }
])

/** One round as the child measured it. */
export interface RoundResult {
  /** Wall time of the recording loop, ms. */
  ms: number
  mEventsPerSec: number
  /**
   * CPU time of the process (all threads: includes concurrent GC) during the
   * loop, ms. Less sensitive than wall time to other work on the machine.
   */
  cpuMs: number
  /** Events per CPU-second, millions. */
  mEventsPerCpuSec: number
  /** Growth of `heapUsed + arrayBuffers` across the loop, both sides after `gc()`. */
  heapDeltaBytes: number
  /** Uids the collector holds after the loop (its `unflushed_uids`). */
  trackedUids: number
  /** `heapDeltaBytes / trackedUids`. */
  bytesPerUid: number
  /** Whether this round also flushed into the store and compared the store's totals (the last round does). */
  storeChecked: boolean
  /** The collector's counters (and the store's totals, when checked) equal the generated totals; nothing flushed early or was ignored. */
  ok: boolean
  /** What did not match, when `ok` is false. */
  problems: string[]
}

/** What a child prints on stdout as one JSON line. */
export interface ScenarioResult {
  scenario: string
  warmup: RoundResult[]
  rounds: RoundResult[]
  /** Bytes and events generated per round (every round replays the same input). */
  generatedBytes: number
  generatedEvents: number
}

/** The scenario with this id, or undefined. */
export function scenarioById (id: string | undefined): RecordScenario | undefined {
  return SCENARIOS.find((s) => s.id === id)
}
