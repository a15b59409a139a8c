import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { BundleName } from './bundles.ts'
import { AccessLogTally, enginePids } from './engine-log.ts'
import { NGINX, startNginx } from './nginx.ts'
import { freePort, waitForHttp } from './net.ts'
import { LOAD_CORE, TARGET_CORE } from './plan.ts'
import type { TargetSpec } from './plan.ts'
import { cpusAllowed, processTree } from './proc-stats.ts'
import type { Managed, ProcessGroup } from './processes.ts'
import type { ReportReceiver } from './report-receiver.ts'

/**
 * Settings streammeter reads from the environment (docs/configuration.md):
 * any inherited one is dropped, so that only what the benchmark sets applies
 * (an unknown one with these prefixes would even stop the start).
 */
const SETTING_PREFIXES = ['TRAFFIC_', 'ORIGIN_', 'STORE_', 'SIGNING_', 'SHUTDOWN_', 'ADMIN_', 'CORS_', 'TRUSTED_', 'ACCESS_', 'SESSION_', 'GRANT_', 'KEY_', 'PLAYLIST_']
const PLAIN_SETTINGS = new Set(['PORT', 'HOST', 'WORKERS', 'LOG_LEVEL', 'ENGINE', 'ENGINE_DIR', 'NGINX_BIN'])

/** What starting a target needs. */
export interface TargetContext {
  group: ProcessGroup
  /** Temp directory of this run. */
  tmp: string
  contentRoot: string
  /** The origin nginx, `http://127.0.0.1:<port>`. */
  originUrl: string
  receiver: ReportReceiver
  secret: string
  /** A signed path that every target must answer 200 before it counts as up. */
  probePath: string
  /** The Node targets' bundles (see bundles.ts). */
  bundles: Record<BundleName, string>
  /** streammeter built from the base ref of an A/B run (`--base`), for the `…-base` targets. */
  baseBundle?: string
  /** Other Node.js majors and streammeter bundled for each (runtimes.ts), for the `…-node<major>` targets. */
  runtimes?: ReadonlyMap<number, { node: string, bundle: string }>
}

/** A started target. */
export interface RunningTarget {
  spec: TargetSpec
  /** `http://127.0.0.1:<port>` */
  url: string
  proc: Managed
  /**
   * PIDs whose CPU and memory are the target's, as of now: the one Node
   * process; nginx's master and workers; for the nginx engine streammeter,
   * its nginx master and workers. Looked up afresh for every run, since an
   * nginx master replaces a worker that died.
   */
  pids: () => number[]
  /** The nginx engine: its directory (`ENGINE_DIR`) and what its access log holds so far. */
  engine?: { dir: string, log: AccessLogTally }
}

/** A process on the load core, shared by the HTTP-origin targets. */
export async function startOrigin (ctx: Pick<TargetContext, 'group' | 'tmp' | 'contentRoot'>): Promise<{ url: string, proc: Managed }> {
  const port = await freePort()
  const proc = startNginx(ctx.group, { name: 'origin nginx', prefix: join(ctx.tmp, 'origin'), port, core: LOAD_CORE, site: { kind: 'static', root: ctx.contentRoot } })
  const url = `http://127.0.0.1:${port}`
  return { url, proc }
}

/** Start `spec` pinned to the target core and wait until it answers a signed request. */
export async function startTarget (spec: TargetSpec, ctx: TargetContext): Promise<RunningTarget> {
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const dir = join(ctx.tmp, spec.id)
  mkdirSync(dir, { recursive: true })
  const log = join(dir, 'output.log')
  const core = String(TARGET_CORE)
  let proc: Managed
  let engineDir: string | undefined
  switch (spec.id) {
    case 'nginx-static':
      proc = startNginx(ctx.group, { name: spec.label, prefix: dir, port, core: TARGET_CORE, site: { kind: 'static', root: ctx.contentRoot } })
      break
    case 'nginx-proxy':
      proc = startNginx(ctx.group, { name: spec.label, prefix: dir, port, core: TARGET_CORE, site: { kind: 'proxy', upstream: new URL(ctx.originUrl).host } })
      break
    case 'sm-http':
    case 'sm-http-unsigned':
    case 'sm-fs':
    case 'sm-fs-off':
    case 'sm-fs-session':
    case 'sm-fs-grant':
    case 'sm-http-base':
    case 'sm-fs-base': {
      // The base targets differ from their counterparts in the bundle only.
      const bundle = spec.id.endsWith('-base') ? ctx.baseBundle : ctx.bundles.streammeter
      if (bundle === undefined) throw new Error(`${spec.label}: no base bundle (needs --base <ref>)`)
      proc = ctx.group.start(spec.label, 'taskset', ['-c', core, process.execPath, bundle, 'serve'], {
        cwd: dir,
        logPath: log,
        env: streammeterEnv(spec, ctx, dir, port)
      })
      break
    }
    case 'sm-http-node22': {
      const runtime = ctx.runtimes?.get(spec.runtime ?? 0)
      if (runtime === undefined) throw new Error(`${spec.label}: Node ${String(spec.runtime)} was not prepared`)
      proc = ctx.group.start(spec.label, 'taskset', ['-c', core, runtime.node, runtime.bundle, 'serve'], {
        cwd: dir,
        logPath: log,
        env: streammeterEnv(spec, ctx, dir, port)
      })
      break
    }
    case 'sm-nginx-http':
    case 'sm-nginx-fs':
    case 'sm-nginx-fs-session':
    case 'sm-nginx-http-base':
    case 'sm-nginx-fs-base': {
      const bundle = spec.id.endsWith('-base') ? ctx.baseBundle : ctx.bundles.streammeter
      if (bundle === undefined) throw new Error(`${spec.label}: no base bundle (needs --base <ref>)`)
      // The real CLI, as an operator starts it; nginx, its child, inherits the pinning.
      engineDir = join(dir, 'engine')
      proc = ctx.group.start(spec.label, 'taskset', ['-c', core, process.execPath, bundle, 'serve', '--engine', 'nginx'], {
        cwd: dir,
        logPath: log,
        // One nginx worker: one core, like every other target.
        env: { ...streammeterEnv(spec, ctx, dir, port), ENGINE_DIR: engineDir, NGINX_BIN: NGINX, WORKERS: '1' }
      })
      break
    }
    case 'fastify-proxy':
    case 'http-proxy':
    case 'undici-proxy':
      proc = ctx.group.start(spec.label, 'taskset', ['-c', core, process.execPath, ctx.bundles[spec.id]], {
        cwd: dir,
        logPath: log,
        env: { ...inheritedEnv(), PEER_ORIGIN_URL: ctx.originUrl, PEER_PORT: String(port), PEER_HOST: '127.0.0.1' }
      })
      break
  }
  await waitForHttp(`${url}${ctx.probePath}`, proc)
  const nginxAlone = spec.id.startsWith('nginx')
  const engine = engineDir === undefined ? undefined : { dir: engineDir, log: new AccessLogTally(join(engineDir, 'access.log')) }
  const pid = proc.pid
  const pids = engine !== undefined
    ? () => enginePids(pid, engine.dir)
    : nginxAlone ? () => processTree(pid) : () => [pid]
  const now = pids()
  if (now.length < (engine !== undefined ? 3 : nginxAlone ? 2 : 1)) throw new Error(`${spec.label}: no nginx worker process found (${now.join(', ')})`)
  checkPinned(spec.label, now, core)
  return { spec, url, proc, pids, ...(engine === undefined ? {} : { engine }) }
}

/**
 * The settings of a streammeter target: signed URLs (but for
 * `sm-http-unsigned`), metering on (but for `sm-fs-off`), every byte reported (no threshold) to the receiver, a
 * SQLite store of its own; the rest at its defaults.
 */
function streammeterEnv (spec: TargetSpec, ctx: TargetContext, dir: string, port: number): NodeJS.ProcessEnv {
  const httpOrigin = spec.id === 'sm-http' || spec.id === 'sm-http-unsigned' || spec.id === 'sm-http-base' || spec.id === 'sm-nginx-http' || spec.id === 'sm-nginx-http-base' ||
    spec.runtime !== undefined
  return {
    ...inheritedEnv(),
    ...(httpOrigin ? { ORIGIN_URL: ctx.originUrl } : { ORIGIN_ROOT: ctx.contentRoot }),
    ...(spec.signing === false ? {} : { SIGNING_SECRET: ctx.secret }),
    // Grants need the access API; the key is the signing secret's twin, never logged.
    ...(needsGrants(spec) ? { ACCESS_API_KEY: accessApiKey(ctx.secret) } : {}),
    STORE_URL: `sqlite:${join(dir, 'bench.db')}`,
    TRAFFIC_COLLECTOR_ENABLED: spec.id === 'sm-fs-off' ? 'false' : 'true',
    TRAFFIC_MIN_BYTES: '0',
    TRAFFIC_REPORT_URL: ctx.receiver.urlFor(spec.id),
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    // Bounds how long the final stop may take; the receiver answers at once.
    SHUTDOWN_GRACE: '20'
  }
}

/**
 * Whether a target's load is let in through grants: the grant targets, and
 * the nginx engine's session target, whose sessions a grant opens (nginx
 * answers a signed segment itself, without opening one).
 */
export function needsGrants (spec: TargetSpec): boolean {
  return spec.access === 'grant' || (spec.access === 'session' && spec.engine === 'nginx')
}

/** The `ACCESS_API_KEY` of a target that {@link needsGrants}, from the run's secret. */
export function accessApiKey (secret: string): string {
  return `grant-${secret.slice(0, 16)}`
}

/** Every PID of a target must be allowed on `core` only: the comparison assumes one core each. */
export function checkPinned (label: string, pids: readonly number[], core: string): void {
  for (const pid of pids) {
    const allowed = cpusAllowed(pid)
    if (allowed !== core) throw new Error(`${label}: process ${pid} may run on CPUs ${allowed}, expected ${core}`)
  }
}

function inheritedEnv (): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (PLAIN_SETTINGS.has(k) || SETTING_PREFIXES.some((p) => k.startsWith(p))) continue
    // NODE_OPTIONS from the caller (a --inspect, a loader) would change what is measured.
    if (k === 'NODE_OPTIONS') continue
    env[k] = v
  }
  return env
}
