import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { BundleName } from './bundles.ts'
import { startNginx } from './nginx.ts'
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
const SETTING_PREFIXES = ['TRAFFIC_', 'ORIGIN_', 'STORE_', 'SIGNING_', 'SHUTDOWN_', 'ADMIN_', 'CORS_', 'TRUSTED_']
const PLAIN_SETTINGS = new Set(['PORT', 'HOST', 'WORKERS', 'LOG_LEVEL'])

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
}

/** A started target. */
export interface RunningTarget {
  spec: TargetSpec
  /** `http://127.0.0.1:<port>` */
  url: string
  proc: Managed
  /** PIDs whose CPU and memory are the target's: nginx's master and worker, or the one Node process. */
  pids: readonly number[]
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
  switch (spec.id) {
    case 'nginx-static':
      proc = startNginx(ctx.group, { name: spec.label, prefix: dir, port, core: TARGET_CORE, site: { kind: 'static', root: ctx.contentRoot } })
      break
    case 'nginx-proxy':
      proc = startNginx(ctx.group, { name: spec.label, prefix: dir, port, core: TARGET_CORE, site: { kind: 'proxy', upstream: new URL(ctx.originUrl).host } })
      break
    case 'sm-http':
    case 'sm-fs':
    case 'sm-fs-off':
    case 'sm-http-base':
    case 'sm-fs-base': {
      // The base targets differ from their counterparts in the bundle only.
      const bundle = spec.id.endsWith('-base') ? ctx.baseBundle : ctx.bundles.streammeter
      if (bundle === undefined) throw new Error(`${spec.label}: no base bundle (needs --base <ref>)`)
      const httpOrigin = spec.id === 'sm-http' || spec.id === 'sm-http-base'
      proc = ctx.group.start(spec.label, 'taskset', ['-c', core, process.execPath, bundle, 'serve'], {
        cwd: dir,
        logPath: log,
        env: {
          ...inheritedEnv(),
          ...(httpOrigin ? { ORIGIN_URL: ctx.originUrl } : { ORIGIN_ROOT: ctx.contentRoot }),
          SIGNING_SECRET: ctx.secret,
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
      })
      break
    }
    case 'fastify-proxy':
    case 'http-proxy':
      proc = ctx.group.start(spec.label, 'taskset', ['-c', core, process.execPath, ctx.bundles[spec.id]], {
        cwd: dir,
        logPath: log,
        env: { ...inheritedEnv(), PEER_ORIGIN_URL: ctx.originUrl, PEER_PORT: String(port), PEER_HOST: '127.0.0.1' }
      })
      break
  }
  await waitForHttp(`${url}${ctx.probePath}`, proc)
  const pids = spec.id.startsWith('nginx') ? processTree(proc.pid) : [proc.pid]
  if (spec.id.startsWith('nginx') && pids.length < 2) throw new Error(`${spec.label}: no worker process found under master ${proc.pid}`)
  checkPinned(spec.label, pids, core)
  return { spec, url, proc, pids }
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
