import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { NJS_MODULE_PATH } from '../../src/server/nginx/nginx-config.ts'
import { fixed, int, median } from './lib/format.ts'
import { describeMachine } from './lib/machine.ts'
import type { MachineInfo } from './lib/machine.ts'
import { RESULTS_DIR, writeResults } from './lib/results.ts'
import { abFigures, renderAb } from './proxy/ab.ts'
import { STREAMMETER_ENTRY, bundleBase, bundleNodeTargets, bundleStreammeter, describeCurrent, resolveBase } from './proxy/bundles.ts'
import { ensureRuntime } from './proxy/runtimes.ts'
import type { BaseBuild, CurrentBuild } from './proxy/bundles.ts'
import { ensureContent } from './proxy/content.ts'
import type { Content } from './proxy/content.ts'
import { readerCaughtUp, stopLeftoverNginx } from './proxy/engine-log.ts'
import { checkExactness, exactnessLine } from './proxy/exactness.ts'
import type { Exactness } from './proxy/exactness.ts'
import { NGINX, nginxErrors } from './proxy/nginx.ts'
import { waitForHttp } from './proxy/net.ts'
import {
  ENGINE_COMPARISONS, ENGINE_TARGETS, FULL_TIMING, LIMITS, LOAD_CORE, LOAD_UIDS, POOL_SIZE, QUICK_TIMING, RATIOS, SCENARIOS, TARGET_CORE,
  TARGET_IDS, VERIFY, runTargets
} from './proxy/plan.ts'
import type { Scenario, ScenarioId, TargetId, TargetSpec, Timing } from './proxy/plan.ts'
import { coreTimes, cpuSeconds, peakRssBytes, resetPeakRss } from './proxy/proc-stats.ts'
import type { CoreTimes } from './proxy/proc-stats.ts'
import { ProcessGroup, isRunning, logTail } from './proxy/processes.ts'
import { ReportReceiver } from './proxy/report-receiver.ts'
import { seededRandom, shuffled, signedPath, signedPool } from './proxy/signed-paths.ts'
import type { PoolEntry } from './proxy/signed-paths.ts'
import { accessRequests, grantAll, openSessions } from './proxy/access-setup.ts'
import { engineRows, errorCount, limits, othersOnTargetCore, ratios, renderEngines, renderTables, summarize, throughput } from './proxy/summary.ts'
import type { Sample } from './proxy/summary.ts'
import { checkPinned, startOrigin, startTarget } from './proxy/targets.ts'
import type { RunningTarget } from './proxy/targets.ts'
import { WRK, runWrk, writeWrkScript } from './proxy/wrk.ts'

/**
 * The `proxy` benchmark: streammeter (HTTP and filesystem origin, every URL
 * signed, metering on) against nginx (static, proxy_pass) and two Node
 * proxies, each pinned to core 0 and loaded by wrk on core 1, in interleaved
 * rounds; then an exactness check of streammeter's reports. See
 * bench/README.md for the method.
 *
 *   node --import tsx src/run.ts proxy [--quick] [--rounds <n>] [--base <git-ref> [--all]] [--targets <id>,...] [s1|s2|s3 ...]
 *
 * With `--base`, an A/B run: streammeter built from the working tree against
 * streammeter built from `<git-ref>`, both in the same rounds; the other
 * targets only with `--all`. `--targets` runs only the targets it names
 * (ids of plan.ts: nginx-static, sm-nginx-fs, …), to keep a run short.
 * `--rounds` sets the number of timed rounds (4 by default), for medians
 * steadier than 4 rounds give where a cost moves from round to round.
 */

/** Pause before each run, so that the previous run's closing connections are handled before CPU is read. */
const SETTLE_MS = 250
/** Signed URLs stay valid this long: far past any run. */
const URL_LIFETIME_S = 7 * 24 * 3600

const log = (line: string): void => { process.stderr.write(`${line}\n`) }

/** The command line of the suite. */
interface Options {
  quick: boolean
  /** `--base <ref>`: an A/B run against streammeter as built from `ref` (resolved to its commit). */
  base: { ref: string, commit: string } | undefined
  /** `--all`: in an A/B run, every other target too. */
  all: boolean
  /** Scenarios named, or every one. */
  scenarios: readonly Scenario[]
  /** `--targets a,b`: only these target ids; undefined: every target of the run. */
  only: readonly string[] | undefined
  /** `--rounds n`: timed rounds per scenario instead of the timing's own. */
  rounds: number | undefined
}

/** The most rounds `--rounds` takes: 100 rounds of every target are hours already. */
const MAX_ROUNDS = 100

/** Parse the suite's arguments; a string says what is wrong with them. */
function parseArgs (args: readonly string[]): Options | string {
  const ids = SCENARIOS.map((s) => s.id as string)
  const usage = `usage: proxy [--quick] [--rounds <n>] [--base <git-ref> [--all]] [--targets <id>,...] [${ids.join('|')} ...]; target ids: ${TARGET_IDS.join(', ')}`
  let quick = false
  let rounds: number | undefined
  let all = false
  let base: string | undefined
  let targets: string[] | undefined
  const only: string[] = []
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string
    if (a === '--quick') quick = true
    else if (a === '--all') all = true
    else if (a === '--rounds' || a.startsWith('--rounds=')) {
      const n = a === '--rounds' ? args[++i] : a.slice('--rounds='.length)
      if (n === undefined || !/^\d+$/.test(n) || Number(n) < 1 || Number(n) > MAX_ROUNDS) return `--rounds needs a whole number from 1 to ${MAX_ROUNDS} (${usage})`
      rounds = Number(n)
    } else if (a === '--base' || a.startsWith('--base=')) {
      const ref = a === '--base' ? args[++i] : a.slice('--base='.length)
      if (ref === undefined || ref === '' || ref.startsWith('-')) return `--base needs a git ref (${usage})`
      if (base !== undefined) return `--base given twice (${usage})`
      base = ref
    } else if (a === '--targets' || a.startsWith('--targets=')) {
      const list = a === '--targets' ? args[++i] : a.slice('--targets='.length)
      if (list === undefined || list === '' || list.startsWith('-')) return `--targets needs target ids (${usage})`
      const named = list.split(',').map((x) => x.trim()).filter((x) => x !== '')
      const unknown = named.filter((x) => !(TARGET_IDS as readonly string[]).includes(x))
      if (unknown.length > 0) return `unknown target ${unknown.join(', ')} (${usage})`
      targets = [...(targets ?? []), ...named]
    } else if (ids.includes(a)) only.push(a)
    else return `unknown argument ${a} (${usage})`
  }
  if (all && base === undefined) return `--all only goes with --base (${usage})`
  const scenarios = only.length === 0 ? SCENARIOS : SCENARIOS.filter((s) => only.includes(s.id))
  if (base === undefined) return { quick, base, all, scenarios, only: targets, rounds }
  const resolved = resolveBase(base)
  return typeof resolved === 'string' ? resolved : { quick, base: resolved, all, scenarios, only: targets, rounds }
}

/** Run the suite; resolves false when a check failed, the harness failed, or the arguments are wrong. */
export async function runProxySuite (args: readonly string[] = []): Promise<boolean> {
  const options = parseArgs(args)
  if (typeof options === 'string') {
    log(`proxy: ${options}`)
    return false
  }
  const { quick, scenarios } = options
  const timing = { ...(quick ? QUICK_TIMING : FULL_TIMING), ...(options.rounds === undefined ? {} : { rounds: options.rounds }) }
  const specs = runTargets({ ab: options.base !== undefined, all: options.all, only: options.only })
  if (specs.length === 0) {
    log(`proxy: no target left to run (--targets ${options.only?.join(',') ?? ''} names none of this run's)`)
    return false
  }
  const missing = prerequisitesMissing(specs)
  if (missing !== undefined) {
    log(`proxy: ${missing}`)
    return false
  }

  const group = new ProcessGroup()
  const receiver = new ReportReceiver()
  const tmp = mkdtempSync(join(tmpdir(), 'streammeter-proxy-'))
  const targets: RunningTarget[] = []
  // Run as root, nginx's worker is `nobody`, and must reach its temp
  // directories below this one (mkdtemp makes it 0700): proxy_buffering
  // spills large responses to files there.
  chmodSync(tmp, 0o755)
  let keepTmp = false
  let interrupted = false
  // Ctrl-C (or a kill): stop every process we started, which makes whatever
  // the run is waiting for fail at once; the `finally` below then cleans up.
  // Should it hang regardless, or on a second signal, exit anyway.
  const onSignal = (signal: NodeJS.Signals): void => {
    if (interrupted) process.exit(130)
    interrupted = true
    log(`\nproxy: ${signal}: stopping every process started`)
    group.stopAll(2_000).catch(() => {})
    setTimeout(() => process.exit(130), 15_000).unref()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  try {
    const machine = describeMachine()
    log(header(machine, timing, quick))
    let ab: { current: CurrentBuild, base: BaseBuild } | undefined
    if (options.base !== undefined) {
      log(`A/B: bundling streammeter as it was at ${options.base.ref}`)
      ab = { current: describeCurrent(), base: await bundleBase(options.base, join(tmp, 'base')) }
      log(abLine(ab))
    }
    const content = ensureContent(log)
    await receiver.listen()
    const secret = randomBytes(32).toString('hex')
    const expires = Math.floor(Date.now() / 1000) + URL_LIFETIME_S
    const { scripts, s2Pool } = writeScripts(tmp, content, secret, expires)
    const probePath = signedPath(secret, 'probe', content.byScenario.s2.files[0] as string, expires)

    const bundles = await bundleNodeTargets(join(tmp, 'bundles'))
    const runtimes = await prepareRuntimes(specs, join(tmp, 'runtimes'))
    const origin = await startOrigin({ group, tmp, contentRoot: content.root })
    await waitForHttp(`${origin.url}${probePath}`, origin.proc)
    for (const spec of specs.filter((t) => scenarios.some((sc) => t.scenarios.includes(sc.id)))) {
      log(`starting ${spec.label}`)
      targets.push(await startTarget(spec, { group, tmp, contentRoot: content.root, originUrl: origin.url, receiver, secret, probePath, bundles, baseBundle: ab?.base.bundle, runtimes }))
    }

    const accessScripts = await prepareAccess(targets, { tmp, content, secret, expires, s2Pool })
    const scriptOf = (t: RunningTarget, sc: Scenario): string => (sc.id === 's2' ? accessScripts.get(t.spec.id) : undefined) ?? scripts[sc.id]
    const samples = await measureAll(group, targets, scenarios, scriptOf, timing, Math.max(20, ...specs.map((t) => t.label.length + 1)))

    const exactness: Exactness[] = []
    let seed = 1000
    for (const t of targets.filter((x) => x.spec.metered)) {
      log(`exactness pass: ${t.spec.label}`)
      exactness.push(await checkExactness(t, { group, receiver, content, secret, expires, seed: seed++ }))
    }
    const unmetered = await checkUnmetered(group, receiver, targets)

    const cells = summarize(samples, specs)
    const figures = ab === undefined ? undefined : abFigures(cells, samples)
    const nginxNotes = nginxLogNotes(tmp)
    const engines = renderEngines(cells, specs)
    const ok = exactness.every((e) => e.ok) && unmetered.every((u) => u.ok)
    const out = [
      '',
      header(machine, timing, quick),
      ...(ab === undefined ? [] : [abLine(ab)]),
      '',
      renderTables(cells, specs),
      '',
      ...(engines === '' ? [] : [engines, '']),
      ...(figures === undefined ? [] : [renderAb(figures), '']),
      ...exactness.map(exactnessLine),
      ...unmetered.map((u) => `${u.ok ? 'OK' : 'FAIL'} ${u.target}: ${u.line}`),
      ...errorsNote(samples),
      noiseNote(samples),
      ...nginxNotes
    ]
    process.stdout.write(`${out.join('\n')}\n`)
    const path = writeResults(ab === undefined ? 'proxy' : 'proxy-ab', {
      suite: 'proxy',
      createdAt: new Date().toISOString(),
      quick,
      machine,
      tools: { nginx: versionOf(NGINX, ['-v']), wrk: versionOf(WRK, ['-v']) },
      config: {
        timing,
        scenarios,
        targets: specs,
        cores: { targets: TARGET_CORE, originAndWrk: LOAD_CORE },
        loadUids: LOAD_UIDS,
        poolSize: POOL_SIZE,
        verify: VERIFY,
        ratios: RATIOS,
        limits: LIMITS,
        engines: { comparisons: ENGINE_COMPARISONS, targets: ENGINE_TARGETS }
      },
      ok,
      cells,
      ratios: ratios(cells, specs),
      limits: limits(cells, specs),
      engines: engineRows(cells, specs),
      ...(ab === undefined ? {} : { ab: { current: ab.current, base: { ref: ab.base.ref, commit: ab.base.commit }, figures } }),
      exactness,
      unmetered,
      nginxErrors: nginxNotes,
      samples
    })
    process.stdout.write(`\nresults: ${path.startsWith(RESULTS_DIR) ? `bench/results/${path.slice(RESULTS_DIR.length)}` : path}\n`)
    return ok
  } catch (err) {
    if (interrupted) return false
    keepTmp = true
    log(`proxy: failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`)
    log(`proxy: logs kept in ${tmp}`)
    return false
  } finally {
    await group.stopAll()
    // An nginx engine's nginx is streammeter's child in a group of its own:
    // streammeter stops it when it stops, but not when it was killed.
    for (const t of targets) if (t.engine !== undefined) await stopLeftoverNginx(t.engine.dir)
    await receiver.close()
    if (!keepTmp) rmSync(tmp, { recursive: true, force: true })
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    if (interrupted) process.exit(130)
  }
}

/** Each other Node.js major the run's targets need, installed and built (runtimes.ts), with streammeter bundled for it. */
async function prepareRuntimes (specs: readonly TargetSpec[], dir: string): Promise<Map<number, { node: string, bundle: string }>> {
  const out = new Map<number, { node: string, bundle: string }>()
  for (const major of new Set(specs.flatMap((t) => t.runtime === undefined ? [] : [t.runtime]))) {
    const runtime = ensureRuntime(major, log)
    log(`runtimes: Node ${major} is ${runtime.version} (${runtime.node})`)
    out.set(major, { node: runtime.node, bundle: await bundleStreammeter(STREAMMETER_ENTRY, join(dir, `node${major}`), runtime.modules) })
  }
  return out
}

function prerequisitesMissing (specs: readonly TargetSpec[]): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux (/proc, taskset)'
  if (availableParallelism() < 2) return 'needs at least 2 CPUs (targets on one, origin and wrk on the other)'
  for (const [name, bin, args] of [['nginx', NGINX, ['-v']], ['wrk', WRK, ['-v']], ['taskset', 'taskset', ['-V']]] as const) {
    if (spawnSync(bin, args).error !== undefined) return `${name} not found (${bin}); on Debian: apt-get install nginx-light wrk util-linux`
  }
  if (specs.some((t) => t.engine === 'nginx') && !existsSync(NJS_MODULE_PATH)) {
    return `the nginx engine's targets need nginx's js module (${NJS_MODULE_PATH}; on Debian: apt-get install nginx libnginx-mod-http-js), ` +
      'or leave them out with --targets'
  }
  return undefined
}

function versionOf (bin: string, args: string[]): string {
  const r = spawnSync(bin, args, { encoding: 'utf8' })
  return `${r.stdout}${r.stderr}`.split('\n').find((l) => l.trim() !== '')?.trim() ?? 'unknown'
}

/**
 * One wrk script per scenario, shared by every target so that all of them
 * get byte-identical requests: POOL_SIZE random (file, uid) pairs, uids among
 * LOAD_UIDS, each signed (nginx and the Node peers ignore the query).
 */
function writeScripts (tmp: string, content: Content, secret: string, expires: number): { scripts: Record<ScenarioId, string>, s2Pool: PoolEntry[] } {
  const random = seededRandom(42)
  const scripts = {} as Record<ScenarioId, string>
  let s2Pool: PoolEntry[] = []
  for (const sc of SCENARIOS) {
    const pool = signedPool({ secret, files: content.byScenario[sc.id].files, uids: LOAD_UIDS, uidPrefix: 'u', size: POOL_SIZE, expires, random })
    const file = join(tmp, `${sc.id}.lua`)
    writeWrkScript(file, pool.map((e) => e.path))
    scripts[sc.id] = file
    if (sc.id === 's2') s2Pool = pool
  }
  return { scripts, s2Pool }
}

/**
 * The S2 scripts of the access targets (plan.ts, `access`): the same (file,
 * uid) pairs as every other target's, as plain paths that a session or a
 * grant lets in, once every uid's session or grant exists in that target.
 */
async function prepareAccess (targets: readonly RunningTarget[], o: { tmp: string, content: Content, secret: string, expires: number, s2Pool: readonly PoolEntry[] }): Promise<Map<TargetId, string>> {
  const out = new Map<TargetId, string>()
  const uids = Array.from({ length: LOAD_UIDS }, (_, i) => `u${i}`)
  const file = o.content.byScenario.s2.files[0] as string
  for (const t of targets) {
    const access = t.spec.access
    if (access === undefined) continue
    log(`${access === 'session' ? 'opening a session' : 'granting'} for each of ${uids.length} uids: ${t.spec.label}`)
    const sessions = access === 'session'
      ? await openSessions(t, { secret: o.secret, file, uids, expires: o.expires })
      : await grantAll(t, { secret: o.secret, file, uids }).then(() => new Map<string, string>())
    const script = join(o.tmp, `s2-${t.spec.id}.lua`)
    writeWrkScript(script, accessRequests(o.s2Pool, access, sessions))
    out.set(t.spec.id, script)
  }
  return out
}

/**
 * For each scenario: one warm-up run per target, then `rounds` rounds in
 * which every target runs once, in an order shuffled afresh each round (seeded,
 * so runs repeat it). A rotation would keep every target behind the same
 * neighbour in every round, and a neighbour can leave work behind (nginx
 * proxy_pass spills large responses to temp files).
 */
async function measureAll (group: ProcessGroup, targets: readonly RunningTarget[], scenarios: readonly Scenario[], scriptOf: (t: RunningTarget, sc: Scenario) => string, timing: Timing, labelWidth: number): Promise<Sample[]> {
  const samples: Sample[] = []
  let seed = 1
  const random = seededRandom(7)
  for (const sc of scenarios) {
    const inScenario = targets.filter((t) => t.spec.scenarios.includes(sc.id))
    for (const t of inScenario) {
      const s = await measure(group, t, sc, scriptOf(t, sc), timing.warmupSeconds, 0, seed++)
      samples.push(s)
      log(progressLine(s, sc, 'warm-up', t, labelWidth))
    }
    for (let round = 1; round <= timing.rounds; round++) {
      for (const t of shuffled(inScenario, random)) {
        const s = await measure(group, t, sc, scriptOf(t, sc), timing.seconds, round, seed++)
        samples.push(s)
        log(progressLine(s, sc, `round ${round}/${timing.rounds}`, t, labelWidth))
      }
    }
  }
  return samples
}

async function measure (group: ProcessGroup, t: RunningTarget, sc: Scenario, script: string, seconds: number, round: number, seed: number): Promise<Sample> {
  if (!isRunning(t.proc)) throw new Error(`${t.spec.label} is no longer running:\n${logTail(t.proc)}`)
  // An nginx master replaces a worker that died: look the processes up again each time.
  const pids = t.pids()
  // The nginx engine's nginx is started by streammeter, not by us: check that it kept the pinning.
  if (t.engine !== undefined) checkPinned(t.spec.label, pids, String(TARGET_CORE))
  const own = t.engine === undefined ? undefined : [t.proc.pid]
  await sleep(SETTLE_MS)
  resetPeakRss(pids)
  const startedAt = new Date().toISOString()
  const cpu0 = cpuSeconds(pids)
  const own0 = own === undefined ? 0 : cpuSeconds(own)
  const cores0 = coreTimes()
  const t0 = performance.now()
  const wrk = await runWrk(group, { url: t.url, script, connections: sc.connections, seconds, core: LOAD_CORE, seed })
  // The nginx engine meters a response when streammeter reads its log line,
  // at its next flush: its CPU is counted until it has read every line of
  // this run, so that the reading is charged to the load that caused it
  // (and not to whichever target runs next on the core).
  if (t.engine !== undefined) await readerCaughtUp(t.url, t.engine.log)
  const wallSeconds = (performance.now() - t0) / 1000
  const cores1 = coreTimes()
  const cpu1 = cpuSeconds(pids)
  const own1 = own === undefined ? 0 : cpuSeconds(own)
  const delta = (core: number): CoreTimes => ({
    busy: (cores1[core]?.busy ?? 0) - (cores0[core]?.busy ?? 0),
    interrupts: (cores1[core]?.interrupts ?? 0) - (cores0[core]?.interrupts ?? 0),
    steal: (cores1[core]?.steal ?? 0) - (cores0[core]?.steal ?? 0)
  })
  return {
    scenario: sc.id,
    target: t.spec.id,
    round,
    startedAt,
    wrk,
    cpuSeconds: cpu1 - cpu0,
    ...(own === undefined ? {} : { ownCpuSeconds: own1 - own0 }),
    peakRssBytes: peakRssBytes(pids),
    cores: { target: delta(TARGET_CORE), load: delta(LOAD_CORE) },
    wallSeconds
  }
}

function progressLine (s: Sample, sc: Scenario, what: string, t: RunningTarget, labelWidth: number): string {
  const errors = errorCount(s)
  return `${sc.id} ${what.padEnd(11)} ${t.spec.label.padEnd(labelWidth)} ${int(throughput(s)).padStart(7)} ${sc.unit}` +
    `  cpu ${fixed(s.cpuSeconds)} s${s.ownCpuSeconds === undefined ? '' : ` (streammeter ${fixed(s.ownCpuSeconds)} s)`}  peak rss ${fixed(s.peakRssBytes / 2 ** 20, 1)} MiB` +
    `  others on core ${TARGET_CORE}: ${fixed(othersOnTargetCore(s) * 100, 0)}%, steal ${fixed(s.cores.target.steal + s.cores.load.steal)} s` +
    `${errors > 0 ? `  ERRORS ${int(errors)} ${JSON.stringify(s.wrk.errors)}` : ''}`
}

/** The streammeter with metering off must stop cleanly and report nothing. */
async function checkUnmetered (group: ProcessGroup, receiver: ReportReceiver, targets: readonly RunningTarget[]): Promise<Array<{ target: string, ok: boolean, line: string }>> {
  const out = []
  for (const t of targets.filter((x) => x.spec.id === 'sm-fs-off')) {
    const exit = await group.stop(t.proc, 'SIGTERM', 60_000)
    const reports = receiver.usage(t.spec.id).reports
    const ok = exit.code === 0 && reports === 0
    out.push({ target: t.spec.id, ok, line: `metering off: ${reports} reports received, exit ${String(exit.code ?? exit.signal)}` })
  }
  return out
}

/** What the nginx error logs say, per nginx that logged errors (the nginx engine's in its ENGINE_DIR). */
function nginxLogNotes (tmp: string): string[] {
  const notes: string[] = []
  for (const name of ['origin', 'nginx-static', 'nginx-proxy', 'sm-nginx-http/engine', 'sm-nginx-fs/engine', 'sm-nginx-http-base/engine', 'sm-nginx-fs-base/engine']) {
    const lines = nginxErrors(join(tmp, name))
    if (lines.length > 0) notes.push(`${name} nginx logged ${lines.length} errors, the first: ${(lines[0] as string).slice(0, 300)}`)
  }
  return notes
}

function errorsNote (samples: readonly Sample[]): string[] {
  const notes: string[] = []
  const bad = samples.filter((s) => errorCount(s) > 0)
  notes.push(bad.length === 0
    ? 'wrk saw no errors (socket errors or status >= 400) in any run'
    : `wrk saw errors in ${bad.length} runs (see the errors rows and the JSON file): a target answering errors is measured on those answers`)
  const stalled = samples.filter((s) => s.wrk.requests === 0)
  if (stalled.length > 0) {
    notes.push(`STALLED: no complete response in ${stalled.length} runs: ${[...new Set(stalled.map((s) => `${s.target} (${s.scenario})`))].join(', ')}`)
  }
  return notes
}

/** How much other work shared the target core: medians mean little when it was large. */
function noiseNote (samples: readonly Sample[]): string {
  const timed = samples.filter((s) => s.round > 0)
  if (timed.length === 0) return ''
  const shares = timed.map(othersOnTargetCore)
  const worst = timed[shares.indexOf(Math.max(...shares))] as Sample
  const steal = timed.reduce((n, s) => n + s.cores.target.steal + s.cores.load.steal, 0)
  return `other processes on core ${TARGET_CORE} during timed runs: median ${fixed(median(shares) * 100, 0)}% of the run, ` +
    `worst ${fixed(Math.max(...shares) * 100, 0)}% (${worst.scenario} ${worst.target} round ${worst.round}); ` +
    `steal time over all timed runs ${fixed(steal)} s`
}

/** What an A/B run compares. */
function abLine (ab: { current: CurrentBuild, base: BaseBuild }): string {
  return `A/B: streammeter from the working tree (HEAD ${ab.current.commit.slice(0, 12)}${ab.current.uncommittedChanges ? ' with uncommitted changes' : ''}) ` +
    `against streammeter at ${ab.base.ref} (${ab.base.commit.slice(0, 12)}), same settings, same rounds`
}

function header (m: MachineInfo, timing: Timing, quick: boolean): string {
  return [
    `proxy benchmark${quick ? ' (--quick: checks the harness; the numbers mean little)' : ''}: ` +
      `${timing.rounds} rounds x ${timing.seconds} s per cell after a ${timing.warmupSeconds} s warm-up, targets interleaved; ` +
      `targets on core ${TARGET_CORE}, origin nginx and wrk on core ${LOAD_CORE}`,
    `node ${m.node}, ${m.platform}/${m.arch}, ${m.cpu} x${m.cpus}, ${m.memoryGiB} GiB; load average ${fixed(m.loadAverage)} at the start`
  ].join('\n')
}
