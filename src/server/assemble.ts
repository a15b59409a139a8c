/**
 * What both engines build the same way from a configuration: the origin, the
 * store and the collector over it, and the HTTP app (not yet listening).
 */
import type { Logger } from 'pino'
import type { Config } from '../config/index.ts'
import { toMeterOptions } from '../config/index.ts'
import { TrafficCollector, policyOf, resolveMeterOptions } from '../meter/index.ts'
import type { MeterOptions, StoreDurability, UsageStore } from '../meter/index.ts'
import { openStore } from '../store/index.ts'
import { buildApp } from './app.ts'
import type { App, AppOptions } from './app.ts'
import { FsOrigin } from './origin/fs-origin.ts'
import { HttpOrigin } from './origin/http-origin.ts'
import type { Origin } from './origin/origin.ts'

/**
 * Open the store and build the app over it and the origin, with `extra`
 * options on top (the nginx engine's). `store` is the store as opened (the
 * app's is wrapped for its latency figures).
 * @throws when the store cannot be opened (the origin is closed again)
 */
export async function assembleApp (config: Config, logger: Logger, extra: Partial<AppOptions> = {}): Promise<{ app: App, store: UsageStore }> {
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
    accessAllowCidrs: config.accessAllowCidrs,
    accessApiKey: config.accessApiKey,
    accessOpenExtensions: config.accessOpenExtensions,
    sessions: {
      sessionTtl: config.sessionTtl,
      grantTtl: config.grantTtl,
      grantMaxPerUid: config.grantMaxPerUid,
      grantMaxPathsPerNetwork: config.grantMaxPathsPerNetwork
    },
    useLimits: { key: config.keyMaxUses, playlist: config.playlistMaxUses },
    corsOrigins: config.corsOrigins,
    adminToken: config.adminToken,
    shutdownGrace: config.shutdownGrace,
    sendTimeout: config.sendTimeout,
    maxTransfersPerIp: config.maxTransfersPerIp,
    playlistMaxBytes: config.playlistMaxBytes,
    publicHosts: config.publicHosts,
    logger,
    workerId: meter.workerId,
    ...extra
  })
  return { app, store }
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

/** `http://host:port` for a listener on `host` (a wildcard address shown as `localhost`). */
export function addressOf (host: string, port: number): string {
  const shown = host === '::' || host === '0.0.0.0' ? 'localhost' : host.includes(':') ? `[${host}]` : host
  return `http://${shown}:${port}`
}
