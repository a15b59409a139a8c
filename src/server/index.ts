/**
 * The streammeter server: `startServer(config)` wires the origin, the store,
 * the collector and the HTTP app, and listens.
 */
import type { Logger } from 'pino'
import type { Config } from '../config/index.ts'
import { describeConfig, toMeterOptions } from '../config/index.ts'
import { TrafficCollector, policyOf, resolveMeterOptions } from '../meter/index.ts'
import type { MeterOptions, StoreDurability, UsageStore } from '../meter/index.ts'
import { openStore } from '../store/index.ts'
import { buildApp } from './app.ts'
import type { App } from './app.ts'
import { FsOrigin } from './origin/fs-origin.ts'
import { HttpOrigin } from './origin/http-origin.ts'
import { createLogger } from './logger.ts'
import { MONITOR_DEMO_PLAYLIST, MONITOR_DEMO_UID, demoPlaylistTarget } from './monitor/monitor-demo.ts'
import type { Origin } from './origin/origin.ts'

export { buildApp } from './app.ts'
export type { App, AppOptions, AppState } from './app.ts'
export { FsOrigin } from './origin/fs-origin.ts'
export { HttpOrigin } from './origin/http-origin.ts'
export type { Origin, OriginRequest, OriginResponse } from './origin/origin.ts'
export { createLogger } from './logger.ts'

/** A listening server. */
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
 * Open the store, build the app, start the collector and listen.
 * @throws when the store cannot be opened or the port cannot be bound (everything opened is closed again)
 */
export async function startServer (config: Config, options: { logger?: Logger } = {}): Promise<RunningServer> {
  const logger = options.logger ?? createLogger(config.logLevel)
  const meter = meterOptionsOf(config)
  const origin: Origin = config.origin.kind === 'http'
    ? new HttpOrigin({
      baseUrl: config.origin.url,
      timeout: config.originTimeout,
      connections: config.originMaxConnections,
      hostHeader: config.originHostHeader
    })
    : new FsOrigin(config.origin.root)
  let store
  try {
    // A proxy restarted while Redis is down still serves: usage waits in
    // memory (bounded) until the store answers, and /health says degraded.
    store = await openStore(config.storeUrl, policyOf(meter), {
      prefix: config.storePrefix, waitForConnection: false, onDurability: (d) => logDurability(logger, d)
    })
  } catch (err) {
    await origin.close()
    throw err
  }
  const app = buildApp({
    origin,
    store,
    collector: (s) => config.trafficCollectorEnabled
      ? createCollector(meter, s, logger)
      : undefined,
    signingSecret: config.signingSecret,
    trustedProxies: config.trustedProxies,
    corsOrigins: config.corsOrigins,
    adminToken: config.adminToken,
    shutdownGrace: config.shutdownGrace,
    sendTimeout: config.sendTimeout,
    maxTransfersPerIp: config.maxTransfersPerIp,
    playlistMaxBytes: config.playlistMaxBytes,
    publicHosts: config.publicHosts,
    logger,
    workerId: meter.workerId
  })
  try {
    await app.fastify.listen({ port: config.port, host: config.host })
  } catch (err) {
    await app.close()
    throw err
  }
  app.collector?.start()
  const addr = app.fastify.server.address()
  const port = typeof addr === 'object' && addr !== null ? addr.port : config.port
  const host = config.host === '::' || config.host === '0.0.0.0' ? 'localhost' : config.host.includes(':') ? `[${config.host}]` : config.host
  const address = `http://${host}:${port}`
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
  return { address, port, app, close: () => app.close() }
}

/** The metering options a configuration gives. */
export function meterOptionsOf (config: Config): Readonly<MeterOptions> {
  return resolveMeterOptions(toMeterOptions(config))
}

/**
 * The collector over `store`: the one place it is built, for the server and
 * for the final seal of the last worker to stop (`serve --workers`).
 */
export function createCollector (meter: Readonly<MeterOptions>, store: UsageStore, logger: Logger): TrafficCollector {
  return new TrafficCollector(meter, { store, logger })
}

/**
 * One line whenever a redis store finds out what its server promises: at
 * start, and again when that changes (a reconnection, a failover).
 */
function logDurability (logger: Logger, d: StoreDurability): void {
  if (d.durable) {
    logger.info({ durability: d.code }, 'redis store: each seal is durable before its reports go out')
  } else {
    logger.warn({ durability: d.code },
      'redis store is not durable: a Redis restart can lose or re-bill the last window (docs/scaling.md, "Redis settings")')
  }
}
