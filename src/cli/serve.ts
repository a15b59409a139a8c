import cluster from 'node:cluster'
import { availableParallelism } from 'node:os'
import { CONFIG_DEFAULTS, SECRET_SETTINGS, SETTING_NAMES, flagOf, loadConfig, settingHelp } from '../config/index.ts'
import type { Config, Env } from '../config/index.ts'
import { ConfigError, EngineError, StoreUrlError } from '../errors.ts'
import { startServer } from '../server/index.ts'
import { wantsHelp } from './args.ts'
import { runPrimary } from './cluster-primary.ts'
import { WORKER_ENV } from './cluster-protocol.ts'
import { runWorker } from './cluster-worker.ts'
import { errorText } from './error-text.ts'
import type { CliContext, RunningServerLike, StartServer } from './context.ts'
import { watchStopSignals } from './stop-signals.ts'

/** The real server; tests pass their own `StartServer` to {@link runServe}. */
export const defaultStartServer: StartServer = startServer

/** `streammeter serve --help`: every setting as a flag, from the schema. */
export function serveHelp (): string {
  const lines = SETTING_NAMES.map((name) => {
    const fallback = (CONFIG_DEFAULTS as Readonly<Record<string, unknown>>)[name]
    const shown = fallback === undefined || SECRET_SETTINGS.has(name)
      ? ''
      : `, default ${Array.isArray(fallback) ? fallback.join(',') || 'none' : String(fallback)}`
    return `  ${flagOf(name)} (${name}${shown})\n      ${settingHelp(name)}`
  })
  return `Usage: streammeter serve [flags]

Runs the proxy. Every setting is a flag here and an environment variable
(also read from .env in the working directory); flags win over the
environment, which wins over .env. Durations are seconds, sizes bytes.
Without ORIGIN_ROOT or ORIGIN_URL the bundled demo media is served.

Flags:
${lines.join('\n')}
  -h, --help
      this help

Exit status: 0 stopped cleanly, 1 failed, 2 invalid configuration.
See docs/configuration.md.
`
}

/**
 * How many server processes `config` asks for: `WORKERS`, with 0 meaning one
 * per CPU core (`os.availableParallelism()`).
 * @throws {ConfigError} when several processes would each keep usage in their
 *   own memory (`memory:`, `sqlite::memory:`), so that none of them sees a
 *   uid's whole usage; or when this process cannot fork them
 */
export function workerCount (config: Pick<Config, 'workers' | 'storeUrl' | 'engine'>, cores: number = availableParallelism()): number {
  // The nginx engine runs one streammeter; WORKERS is nginx's worker processes.
  if (config.engine === 'nginx') return 1
  const count = config.workers === 0 ? cores : config.workers
  if (count <= 1) return 1
  const asked = config.workers === 0 ? `WORKERS=0 (one per CPU core: ${count})` : `WORKERS=${count}`
  if (config.storeUrl === 'memory:' || config.storeUrl === 'sqlite::memory:') {
    throw new ConfigError('WORKERS', `${asked} needs a store the processes share, but STORE_URL=${config.storeUrl} ` +
      'keeps usage in each process\'s own memory, where each would count its share of a user\'s bytes alone; ' +
      'use STORE_URL=sqlite:PATH or redis://…, or WORKERS=1')
  }
  if (!cluster.isPrimary) {
    throw new ConfigError('WORKERS', `${asked}, but this process is itself a cluster worker (a process manager's cluster mode?); ` +
      'use WORKERS=1 and let the process manager run the processes')
  }
  return count
}

/**
 * `streammeter serve`: load the configuration (a {@link ConfigError} escapes
 * to main, exit 2), start the server, run until SIGTERM/SIGINT, close it.
 * With several workers this process becomes their primary (see
 * {@link runPrimary}); a worker of ours runs {@link runWorker}.
 * @returns 0 after a clean stop, 1 when starting or stopping failed, 2 when the
 *   store URL names a store this build does not have, or `ENGINE=nginx` finds
 *   nginx or its js module missing
 */
export async function runServe (argv: readonly string[], env: Env, ctx: CliContext, start: StartServer = defaultStartServer): Promise<number> {
  const workerIndex = cluster.isWorker ? Number(env[WORKER_ENV]) : NaN
  if (workerIndex > 0) return await runWorker(workerIndex, ctx, start)
  if (wantsHelp(argv)) {
    ctx.stdout.write(serveHelp())
    return 0
  }
  const { config, warnings } = loadConfig({ env, argv, cwd: ctx.cwd })
  for (const w of warnings) ctx.stderr.write(`streammeter serve: warning: ${w.message}\n`)
  const workers = workerCount(config)
  if (config.origin.kind === 'demo') {
    ctx.stderr.write(`streammeter serve: no ORIGIN_ROOT or ORIGIN_URL set; serving the bundled demo media from ${config.origin.root}\n`)
  }
  if (workers > 1) return await runPrimary(config, workers, ctx)
  // Installed before starting, so that a signal during start-up stops the
  // server as soon as it is up rather than killing a half-open store.
  const stop = watchStopSignals('serve', ctx)
  try {
    let server: RunningServerLike
    try {
      server = await start(config)
    } catch (err) {
      // A setting the schema accepts but this build or host cannot honour
      // (a redis:// STORE_URL before the redis store exists) is still a
      // configuration problem: exit 2, like any invalid setting.
      if (err instanceof ConfigError || err instanceof StoreUrlError || (err instanceof EngineError && err.missing)) {
        ctx.stderr.write(`streammeter serve: ${err.message}\n`)
        return 2
      }
      ctx.stderr.write(`streammeter serve: could not start: ${errorText(err)}\n`)
      return 1
    }
    ctx.stderr.write(`streammeter serve: listening on ${server.address}\n`)
    await stop.requested
    try {
      await server.close()
    } catch (err) {
      ctx.stderr.write(`streammeter serve: stopping failed: ${errorText(err)}\n`)
      return 1
    }
    ctx.stderr.write('streammeter serve: stopped\n')
    return 0
  } finally {
    stop.dispose()
  }
}
