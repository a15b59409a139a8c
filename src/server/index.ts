/**
 * The streammeter server: `startServer(config)` wires the origin, the store,
 * the collector and the HTTP app, and listens.
 */
import type { Logger } from 'pino'
import type { Config } from '../config/index.ts'
import { describeConfig } from '../config/index.ts'
import type { UsageStore } from '../meter/index.ts'
import type { App } from './app.ts'
import { addressOf, assembleApp } from './assemble.ts'
import { createLogger } from './logger.ts'
import { MONITOR_DEMO_PLAYLIST, MONITOR_DEMO_UID, demoPlaylistTarget } from './monitor/monitor-demo.ts'
import { startNginxEngine } from './nginx/nginx-engine.ts'
import type { NginxEngineOptions } from './nginx/nginx-engine.ts'

export { buildApp } from './app.ts'
export type { App, AppOptions, AppState } from './app.ts'
export { FsOrigin } from './origin/fs-origin.ts'
export { HttpOrigin } from './origin/http-origin.ts'
export type { Origin, OriginRequest, OriginResponse } from './origin/origin.ts'
export { createLogger } from './logger.ts'
export { createCollector, meterOptionsOf } from './assemble.ts'

/** A listening server (docs/engines.md: either engine). */
export interface RunningServer {
  /** `http://host:port` it listens on. */
  readonly address: string
  readonly port: number
  readonly app: App
  /** Graceful stop, in the order docs/metering.md#rules gives. Idempotent. */
  close (): Promise<void>
}

/** The uid the demo links are signed for. */
export const DEMO_UID = MONITOR_DEMO_UID

/**
 * Open the store, build the app, start the collector and listen; with
 * `ENGINE=nginx`, start nginx in front of it (docs/engines.md).
 * @throws when the store cannot be opened or the port cannot be bound (everything opened is closed again);
 *   {@link EngineError} when nginx or its js module is missing or nginx does not start
 */
export async function startServer (config: Config, options: StartOptions = {}): Promise<RunningServer> {
  const logger = options.logger ?? createLogger(config.logLevel)
  if (config.engine === 'nginx') {
    const { server, store } = await startNginxEngine(config, logger, options.nginx)
    logStarted(config, logger, server, store)
    return server
  }
  const { app, store } = await assembleApp(config, logger)
  try {
    await app.fastify.listen({ port: config.port, host: config.host })
  } catch (err) {
    await app.close()
    throw err
  }
  app.collector?.start()
  const addr = app.fastify.server.address()
  const port = typeof addr === 'object' && addr !== null ? addr.port : config.port
  const server = { address: addressOf(config.host, port), port, app, close: () => app.close() }
  logStarted(config, logger, server, store)
  return server
}

/** Options of {@link startServer}. */
export interface StartOptions {
  logger?: Logger | undefined
  /** The nginx engine's tunables that are no settings (tests shorten them). */
  nginx?: NginxEngineOptions | undefined
}

/** The lines a started server logs: its configuration, and what an operator should know. */
function logStarted (config: Config, logger: Logger, server: RunningServer, store: UsageStore): void {
  const { app, address } = server
  logger.info({ config: describeConfig(config) }, 'streammeter started')
  if ('connected' in store && store.connected === false) {
    logger.error({}, 'the redis store is unreachable: serving without it, usage kept in memory until it answers (/health says degraded)')
  }
  if (app.adminAccess === 'closed') {
    logger.warn({}, 'admin endpoints refuse every request: TRUSTED_PROXIES covers loopback, so a local reverse proxy\'s clients would look local; set ADMIN_TOKEN to open them')
  }
  if (config.signingSecret === undefined) {
    logger.warn({}, 'SIGNING_SECRET is not set: the uid query parameter is trusted as-is (development only)')
  }
  if (config.origin.kind === 'demo') {
    const dashboard = `${address}/monitor`
    if (config.signingSecret === undefined) {
      const { target } = demoPlaylistTarget(undefined, Date.now(), 0)
      logger.info({ url: `${address}/${target}`, dashboard }, 'serving the bundled demo media; play this URL')
    } else {
      // No signed URL here: a start-up line is kept by every log collector,
      // and a token in it would be a working credential for whoever reads
      // them. Say how to make one instead.
      const sign = `streammeter sign --uid ${MONITOR_DEMO_UID} --path /${MONITOR_DEMO_PLAYLIST}`
      logger.info({ sign, dashboard }, `serving the bundled demo media; SIGNING_SECRET is set: sign a URL to play it with ${sign}`)
    }
  }
}
