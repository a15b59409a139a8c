/**
 * What the `proxy` benchmark runs: scenarios, targets, rounds and the targets
 * streammeter is held to. Operators compare these numbers across releases
 * and against nginx, so the method is fixed here in one place.
 */

/** Scenario ids, in the order they run (see {@link SCENARIOS}). */
export type ScenarioId = 's1' | 's2' | 's3'

/** Target ids, in table order. */
export type TargetId = 'nginx-static' | 'nginx-proxy' | 'sm-http' | 'sm-fs' | 'sm-nginx-http' | 'sm-nginx-fs' | 'sm-fs-off' |
  'sm-fs-session' | 'sm-fs-grant' | 'sm-nginx-fs-session' | 'sm-http-unsigned' | 'fastify-proxy' | 'http-proxy' | 'undici-proxy' | 'sm-http-base' | 'sm-fs-base' | 'sm-nginx-http-base' | 'sm-nginx-fs-base' |
  'sm-http-node22'

/** One load pattern. */
export interface Scenario {
  id: ScenarioId
  label: string
  /** wrk connections. */
  connections: number
  /** What the throughput row shows: bytes per second (MiB/s) or responses per second. */
  unit: 'MiB/s' | 'req/s'
  /** Every file of the scenario has this size, in bytes. */
  fileBytes: number
}

/** One process (or nginx master + worker, or streammeter + its nginx) under test. */
export interface TargetSpec {
  id: TargetId
  label: string
  /** Scenarios it takes part in. */
  scenarios: readonly ScenarioId[]
  /** A streammeter whose metering is checked for exactness at the end. */
  metered: boolean
  /**
   * streammeter's engine (`serve --engine`): `node` moves the bytes itself;
   * `nginx` starts an nginx of its own that does, and meters its access log.
   * Undefined for the peers.
   */
  engine?: 'node' | 'nginx'
  /**
   * How its S2 load gets in instead of a signed URL per request
   * (docs/access.md): `session`, plain paths with the uid's session in
   * `X-Session-ID` (opened by one signed request per uid before the load);
   * `grant`, plain paths with `?uid=` from a network granted to every uid
   * (`POST /api/whitelist` per uid before the load), no session presented.
   */
  access?: 'session' | 'grant'
  /**
   * The Node.js major that runs it when not this process's (runtimes.ts):
   * such a target runs only when `--targets` names it. Node 24 is not one:
   * the SQLite store refuses it (src/store/sqlite-runtime.ts).
   */
  runtime?: number
  /** False for a streammeter run without `SIGNING_SECRET`; signed otherwise. */
  signing?: false
}

const MIB = 2 ** 20

/**
 * S2 runs first: its peak RSS is held to a target, and a process that has
 * just streamed 64 MiB responses keeps some of that memory for a while, which
 * would be charged to S2 otherwise. Peak RSS is recorded for every cell.
 */
export const SCENARIOS: readonly Scenario[] = [
  { id: 's2', label: 'S2 10,000 x 4 KiB .m4s', connections: 64, unit: 'req/s', fileBytes: 4096 },
  { id: 's1', label: 'S1 64 x 1 MiB .ts', connections: 32, unit: 'MiB/s', fileBytes: MIB },
  { id: 's3', label: 'S3 1 x 64 MiB .mp4', connections: 4, unit: 'MiB/s', fileBytes: 64 * MIB }
]

const ALL: readonly ScenarioId[] = ['s1', 's2', 's3']

export const TARGETS: readonly TargetSpec[] = [
  { id: 'nginx-static', label: 'nginx static', scenarios: ALL, metered: false },
  { id: 'nginx-proxy', label: 'nginx proxy_pass', scenarios: ALL, metered: false },
  { id: 'sm-http', label: 'streammeter http', scenarios: ALL, metered: true, engine: 'node' },
  { id: 'sm-fs', label: 'streammeter fs', scenarios: ALL, metered: true, engine: 'node' },
  // The nginx engine, set up like the two above (docs/engines.md).
  { id: 'sm-nginx-http', label: 'streammeter-nginx http', scenarios: ALL, metered: true, engine: 'nginx' },
  { id: 'sm-nginx-fs', label: 'streammeter-nginx fs', scenarios: ALL, metered: true, engine: 'nginx' },
  // Only S2 (many small responses) shows what metering costs per request.
  { id: 'sm-fs-off', label: 'sm fs meter off', scenarios: ['s2'], metered: false, engine: 'node' },
  // Sessions and grants doing the access check's work (S2: where a per-request cost shows).
  { id: 'sm-fs-session', label: 'sm fs session', scenarios: ['s2'], metered: true, engine: 'node', access: 'session' },
  { id: 'sm-fs-grant', label: 'sm fs grant', scenarios: ['s2'], metered: true, engine: 'node', access: 'grant' },
  // The nginx engine passes what a session lets in to streammeter (docs/engines.md#sessions-and-grants).
  { id: 'sm-nginx-fs-session', label: 'sm-nginx fs session', scenarios: ['s2'], metered: true, engine: 'nginx', access: 'session' },
  // Signing off (development mode: the uid parameter is taken as it is), so no sessions either.
  { id: 'sm-http-unsigned', label: 'sm http unsigned', scenarios: ['s2'], metered: true, engine: 'node', signing: false },
  { id: 'fastify-proxy', label: '@fastify/http-proxy', scenarios: ALL, metered: false },
  { id: 'http-proxy', label: 'http-proxy', scenarios: ALL, metered: false },
  // streammeter's stack with none of its features (peers/undici-proxy.ts).
  { id: 'undici-proxy', label: 'node:http + undici', scenarios: ALL, metered: false },
  // streammeter http as it is, run by Node 22 (only when named in --targets).
  { id: 'sm-http-node22', label: 'streammeter http node22', scenarios: ALL, metered: true, engine: 'node', runtime: 22 }
]

/**
 * A/B (`--base <ref>`): streammeter as built from `<ref>`, set up exactly
 * like its counterpart from the working tree (same settings, a SQLite store
 * and a report path of its own, the same exactness check).
 */
export const BASE_TARGETS: readonly TargetSpec[] = [
  { id: 'sm-http-base', label: 'streammeter http (base)', scenarios: ALL, metered: true, engine: 'node' },
  { id: 'sm-fs-base', label: 'streammeter fs (base)', scenarios: ALL, metered: true, engine: 'node' },
  { id: 'sm-nginx-http-base', label: 'streammeter-nginx http (base)', scenarios: ALL, metered: true, engine: 'nginx' },
  { id: 'sm-nginx-fs-base', label: 'streammeter-nginx fs (base)', scenarios: ALL, metered: true, engine: 'nginx' }
]

/** What an A/B run compares: each working-tree target with the same target built from the base ref. */
export const AB_PAIRS: ReadonlyArray<{ label: string, current: TargetId, base: TargetId }> = [
  { label: 'http origin', current: 'sm-http', base: 'sm-http-base' },
  { label: 'fs origin', current: 'sm-fs', base: 'sm-fs-base' },
  { label: 'nginx engine, http origin', current: 'sm-nginx-http', base: 'sm-nginx-http-base' },
  { label: 'nginx engine, fs origin', current: 'sm-nginx-fs', base: 'sm-nginx-fs-base' }
]

/**
 * The targets of a run, in table order: {@link TARGETS}; for an A/B run the
 * pairs of {@link AB_PAIRS} only (the peers say nothing about current
 * against base, and each adds a column of runs), or with `all` every target
 * plus the base ones, each base target next to its counterpart. `only`
 * (`--targets`) keeps those of them it names.
 */
export function runTargets (opts: { ab: boolean, all: boolean, only?: readonly string[] | undefined }): TargetSpec[] {
  // A target of another runtime downloads and builds it: only when asked for by name.
  const named = (t: TargetSpec): boolean => opts.only === undefined ? t.runtime === undefined : opts.only.includes(t.id)
  if (!opts.ab) return TARGETS.filter(named)
  const out: TargetSpec[] = []
  for (const t of TARGETS) {
    const pair = AB_PAIRS.find((p) => p.current === t.id)
    if (pair === undefined && !opts.all) continue
    out.push(t)
    const base = BASE_TARGETS.find((b) => b.id === pair?.base)
    if (base !== undefined) out.push(base)
  }
  return out.filter(named)
}

/** Every target id a run can have (`--targets` takes these). */
export const TARGET_IDS: readonly TargetId[] = [...TARGETS, ...BASE_TARGETS].map((t) => t.id)

/** How long and how often each (scenario, target) cell is measured. */
export interface Timing {
  rounds: number
  /** wrk -d of one timed round. */
  seconds: number
  /** wrk -d of the one untimed warm-up run per cell, before round 1. */
  warmupSeconds: number
}

export const FULL_TIMING: Timing = { rounds: 4, seconds: 5, warmupSeconds: 3 }
/** `--quick`: checks the harness end to end in about two minutes; its numbers mean little. */
export const QUICK_TIMING: Timing = { rounds: 1, seconds: 2, warmupSeconds: 1 }

/** Distinct uids the timed load spreads over (`u0` … `u9999`). */
export const LOAD_UIDS = 10_000
/** Signed (file, uid) pairs per scenario that wrk picks from at random. */
export const POOL_SIZE = 20_000
/** Untimed exactness pass per metered streammeter: requests, uids (`v0` …) and concurrency. */
export const VERIFY = { s1Requests: 400, s2Requests: 2_600, uids: 1_000, concurrency: 32 } as const

/** Cores: targets on one, the origin nginx and wrk on the other. */
export const TARGET_CORE = 0
export const LOAD_CORE = 1

/** A ratio of two targets' medians, and the floor, ceiling or band it should meet. */
export interface RatioSpec {
  label: string
  scenario: ScenarioId
  numerator: TargetId
  denominator: TargetId
  /**
   * What is divided: throughput (the default), or CPU per unit of work (s/GiB
   * in S1 and S3, µs per request in S2), where lower is better.
   */
  metric?: 'throughput' | 'cpu'
  /** Meets the target when the ratio is at least this (no floor when undefined)… */
  min?: number
  /** …and at most this (no ceiling when undefined). */
  max?: number
}

/**
 * The nginx engine against nginx doing the same work alone (proxy_pass to
 * the same origin, or serving the same files), per origin; the node engine's
 * target of the same origin is shown beside it, measured in the same run.
 */
export const ENGINE_COMPARISONS: ReadonlyArray<{ origin: string, baseline: TargetId, nginxEngine: TargetId, nodeEngine: TargetId }> = [
  { origin: 'http origin', baseline: 'nginx-proxy', nginxEngine: 'sm-nginx-http', nodeEngine: 'sm-http' },
  { origin: 'fs origin', baseline: 'nginx-static', nginxEngine: 'sm-nginx-fs', nodeEngine: 'sm-fs' }
]

/** What the nginx engine is held to, against {@link ENGINE_COMPARISONS}' baselines. */
export const ENGINE_TARGETS = {
  /** Throughput ratio floors per scenario. */
  throughputMin: { s1: 0.9, s2: 0.8, s3: 0.9 } as Readonly<Record<ScenarioId, number>>,
  /** CPU per GiB (S1, S3) or per request (S2) of nginx and streammeter together, at most this times nginx's. */
  cpuMax: 1.15,
  /** streammeter's own process (the log reader) under S2, at most this share of one core. */
  ownCpuShareS2: 0.10
} as const

/** The nginx engine's ratios: throughput and CPU, each scenario, each origin. */
function engineRatios (): RatioSpec[] {
  const out: RatioSpec[] = []
  for (const c of ENGINE_COMPARISONS) {
    const against = c.baseline === 'nginx-proxy' ? 'nginx proxy_pass' : 'nginx static'
    for (const sc of ['s1', 's2', 's3'] as const) {
      out.push({ label: `nginx engine, ${c.origin} ${sc.toUpperCase()} vs ${against}`, scenario: sc, numerator: c.nginxEngine, denominator: c.baseline, min: ENGINE_TARGETS.throughputMin[sc] })
    }
    for (const sc of ['s1', 's2', 's3'] as const) {
      out.push({ label: `nginx engine, ${c.origin} ${sc.toUpperCase()} CPU ${sc === 's2' ? 'per request' : 'per GiB'} vs ${against}`, scenario: sc, numerator: c.nginxEngine, denominator: c.baseline, metric: 'cpu', max: ENGINE_TARGETS.cpuMax })
    }
  }
  return out
}

/** The comparison operators make first: streammeter (signing and metering on) against each Node proxy (metering), per scenario. */
function nodePeerRatios (): RatioSpec[] {
  const out: RatioSpec[] = []
  for (const sc of ['s1', 's2', 's3'] as const) {
    for (const [peer, label] of [['http-proxy', 'http-proxy'], ['fastify-proxy', '@fastify/http-proxy']] as const) {
      out.push({ label: `http origin ${sc.toUpperCase()} vs ${label}`, scenario: sc, numerator: 'sm-http', denominator: peer, min: NODE_PEER_MIN })
    }
  }
  return out
}

/**
 * What streammeter's features cost, apart from its stack; informative, no
 * target: against the same stack with no features, per scenario, and in S2
 * signing (with the sessions it opens) on against off.
 */
function featureRatios (): RatioSpec[] {
  const out: RatioSpec[] = []
  for (const sc of ['s1', 's2', 's3'] as const) {
    out.push({ label: `http origin ${sc.toUpperCase()} vs node:http + undici`, scenario: sc, numerator: 'sm-http', denominator: 'undici-proxy' })
  }
  out.push({ label: 'S2 signed vs unsigned (http origin)', scenario: 's2', numerator: 'sm-http', denominator: 'sm-http-unsigned' })
  out.push({ label: 'S2 unsigned vs node:http + undici', scenario: 's2', numerator: 'sm-http-unsigned', denominator: 'undici-proxy' })
  return out
}

/** streammeter run by Node 22 against Node 20, same sources (runtimes.ts); informative, no target. */
function runtimeRatios (): RatioSpec[] {
  const out: RatioSpec[] = []
  for (const sc of ['s1', 's2', 's3'] as const) {
    out.push({ label: `Node 22 vs Node 20, http origin ${sc.toUpperCase()}`, scenario: sc, numerator: 'sm-http-node22', denominator: 'sm-http' })
    out.push({ label: `Node 22 vs Node 20, http origin ${sc.toUpperCase()} CPU`, scenario: sc, numerator: 'sm-http-node22', denominator: 'sm-http', metric: 'cpu' })
  }
  return out
}

/** streammeter's floor against the best Node proxy, each scenario. */
export const NODE_PEER_MIN = 1.1

export const RATIOS: readonly RatioSpec[] = [
  { label: 'http origin S1 vs nginx proxy_pass', scenario: 's1', numerator: 'sm-http', denominator: 'nginx-proxy', min: 1.0 },
  { label: 'http origin S3 vs nginx proxy_pass', scenario: 's3', numerator: 'sm-http', denominator: 'nginx-proxy', min: 1.0 },
  { label: 'http origin S2 vs nginx proxy_pass', scenario: 's2', numerator: 'sm-http', denominator: 'nginx-proxy', min: 0.5 },
  { label: 'fs origin S1 vs nginx static', scenario: 's1', numerator: 'sm-fs', denominator: 'nginx-static', min: 0.6 },
  { label: 'fs origin S2 vs nginx static', scenario: 's2', numerator: 'sm-fs', denominator: 'nginx-static', min: 0.4 },
  { label: 'S2 metering on vs off (fs origin)', scenario: 's2', numerator: 'sm-fs', denominator: 'sm-fs-off', min: 0.95, max: 1.05 },
  { label: 'S2 by session vs signed URLs (fs origin)', scenario: 's2', numerator: 'sm-fs-session', denominator: 'sm-fs', min: 0.9 },
  { label: 'S2 by session vs signed URLs, CPU per request', scenario: 's2', numerator: 'sm-fs-session', denominator: 'sm-fs', metric: 'cpu', max: 1.1 },
  { label: 'S2 by grant vs signed URLs (fs origin)', scenario: 's2', numerator: 'sm-fs-grant', denominator: 'sm-fs', min: 0.9 },
  { label: 'S2 by grant vs signed URLs, CPU per request', scenario: 's2', numerator: 'sm-fs-grant', denominator: 'sm-fs', metric: 'cpu', max: 1.1 },
  { label: 'nginx engine, S2 by session vs signed URLs', scenario: 's2', numerator: 'sm-nginx-fs-session', denominator: 'sm-nginx-fs', min: 0.9 },
  { label: 'nginx engine, S2 by session vs signed URLs, CPU per request', scenario: 's2', numerator: 'sm-nginx-fs-session', denominator: 'sm-nginx-fs', metric: 'cpu', max: 1.1 },
  ...engineRatios(),
  ...nodePeerRatios(),
  ...featureRatios(),
  ...runtimeRatios()
]

/** Absolute limits for the metered streammeter targets of the node engine (the nginx engine's: {@link ENGINE_TARGETS}). */
export const LIMITS = {
  /** CPU seconds per GiB delivered in S1. */
  cpuSecondsPerGiBS1: 1.3,
  /** Peak RSS under S2, MiB. */
  peakRssMiBS2: 100
} as const
