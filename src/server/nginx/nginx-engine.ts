import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Logger } from 'pino'
import type { Config } from '../../config/index.ts'
import type { TrafficCollector, UsageStore } from '../../meter/index.ts'
import { ClientIpResolver } from '../access/client-ip.ts'
import type { App } from '../app.ts'
import { addressOf, assembleApp } from '../assemble.ts'
import { MeteringInput } from '../metering/metering-input.ts'
import { AccessLogReader } from './access-log-reader.ts'
import { createLogFile } from './log-generations.ts'
import { writeNginxConfig } from './nginx-config.ts'
import { watchNginx } from './nginx-metrics.ts'
import { NginxSupervisor, checkNginx } from './nginx-supervisor.ts'

/** The njs module, beside `src/` and `dist/` alike. */
const NJS_PATH = fileURLToPath(new URL('../../../nginx/streammeter.js', import.meta.url))

/** The nginx engine's tunables that are no settings. */
export interface NginxEngineOptions {
  /** Ms before nginx is started again after it died (doubling up to 5 s). @default 200 */
  restartDelay?: number | undefined
  /** Seconds between two attempts to read the log's committed position while the store does not answer. @default 1 */
  cursorRetry?: number | undefined
  /** Bytes of access log before it is rotated (docs/engines.md#log-rotation). @default 64 MiB */
  logRotateBytes?: number | undefined
}

/** A running nginx engine: the shape of `RunningServer` (server/index.ts). */
export interface RunningNginxEngine {
  readonly address: string
  readonly port: number
  readonly app: App
  readonly supervisor: NginxSupervisor
  close (): Promise<void>
}

/**
 * Start the nginx engine (docs/engines.md): streammeter's app on a private
 * loopback port, nginx in front of it on `HOST:PORT` serving the media, and
 * the access-log reader feeding the collector.
 * @throws {EngineError} when nginx or its js module is missing, or nginx refuses its configuration or does not start
 */
export async function startNginxEngine (config: Config, logger: Logger, options: NginxEngineOptions = {}): Promise<{ server: RunningNginxEngine, store: UsageStore }> {
  checkNginx(config.nginxBin)
  const dir = config.engineDir
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const accessLog = join(dir, 'access.log')
  createLogFile(accessLog)
  const port = config.port === 0 ? await freePort(config.host) : config.port
  const peerKey = randomBytes(32).toString('hex')
  let bytesSent = 0
  const { app, store } = await assembleApp(config, logger, { nginx: { peerKey, bytesSent: () => bytesSent } })
  const statusSocket = join(dir, 'status.sock')
  const supervisor = new NginxSupervisor({
    bin: config.nginxBin,
    dir,
    conf: join(dir, 'nginx.conf'),
    logger,
    restartDelay: options.restartDelay,
    ready: async () => await answers(`${addressOf(probeHost(config.host), port)}/health`),
    unixSockets: [statusSocket]
  })
  let stopReader = (): void => {}
  let reader: AccessLogReader | undefined
  try {
    await app.fastify.listen({ port: 0, host: '127.0.0.1' })
    const { port: appPort } = app.fastify.server.address() as AddressInfo
    writeNginxConfig({
      host: config.host,
      port,
      root: config.origin.kind === 'http' ? dir : config.origin.root,
      httpOrigin: config.origin.kind === 'http'
        ? {
            url: config.origin.url,
            hostHeader: config.originHostHeader,
            timeout: config.originTimeout,
            connections: config.originMaxConnections,
            trustedProxies: config.trustedProxies
          }
        : undefined,
      app: { address: `127.0.0.1:${appPort}`, peerKey, ownPaths: app.ownPaths.routes() },
      statusSocket,
      sendTimeout: config.sendTimeout,
      maxTransfersPerIp: config.maxTransfersPerIp,
      trustedProxies: config.trustedProxies,
      accessAllowCidrs: config.accessAllowCidrs,
      corsOrigins: config.corsOrigins,
      signingSecret: config.signingSecret,
      locked: config.accessApiKey !== undefined,
      openExtensions: config.accessOpenExtensions,
      keysToApp: config.keyMaxUses !== undefined,
      viaApp: config.signingSecret === undefined && config.accessApiKey === undefined ? undefined : { grants: config.accessApiKey !== undefined },
      dir,
      accessLog,
      njsPath: NJS_PATH,
      workers: config.workers,
      user: workerUser(dir)
    })
    await supervisor.start()
  } catch (err) {
    await app.close()
    throw err
  }
  watchNginx(app.metrics.registry, { supervisor, statusSocket, log: () => reader })
  const collector = app.collector
  if (collector !== undefined) {
    const metering = new MeteringInput(collector, Date.now)
    const key = `nginx:${logId(dir)}`
    const ips = new ClientIpResolver([...config.trustedProxies])
    stopReader = attachWhenCommitted(collector, options.cursorRetry ?? 1, logger, async (wanted) => {
      const cursor = await collector.store.logCursor(key)
      // A stop that began while the position was read: nothing to attach.
      if (!wanted()) return
      reader = new AccessLogReader({
        path: accessLog,
        metering,
        ips,
        key,
        position: cursor.position,
        replayTo: cursor.replayTo,
        onDenial: (denial) => { app.denials.add(denial) },
        onResponses: (responses) => {
          for (const r of responses) {
            bytesSent += r.bytes
            // A playlist was counted by the app that rewrote it.
            if (r.fileType !== 'm3u8') app.metrics.observeRequests(r.method, r.status, r.fileType, r.count, r.bytes, r.seconds)
            // nginx's limit_conn (MAX_TRANSFERS_PER_IP) is the only source of a 429.
            if (r.status === 429) app.metrics.countLimitHit('max_transfers_per_ip', r.count)
          }
        },
        onBadLine: (line) => logger.warn({ length: line.length }, 'nginx access log: a line that is no access-log line was skipped'),
        rotate: {
          maxBytes: options.logRotateBytes,
          reopen: () => supervisor.reopenLogs(),
          onError: (err) => logger.error({ err: (err as Error).message }, 'nginx access log: rotation failed; it is tried again at the next check')
        },
        onMissingFile: (file) => logger.error({ file }, 'nginx access log: a rotated file not read to its end is gone; its lines are lost')
      })
      reader.attach(collector)
    })
    collector.start()
  }

  let closing: Promise<void> | undefined
  const close = (): Promise<void> => {
    closing ??= (async () => {
      stopReader()
      // nginx first: it stops accepting, finishes its responses (each one
      // logged) within the grace; then the log is read to its end, every
      // read committed with its usage; then the app seals and delivers.
      const deadline = Date.now() + config.shutdownGrace * 1000
      await supervisor.stop(config.shutdownGrace * 1000)
      if (collector !== undefined && reader !== undefined) {
        for (;;) {
          const before = reader.position
          await collector.flush()
          if (reader.position === before || Date.now() > deadline) break
        }
      }
      reader?.close()
      await app.close()
    })()
    return closing
  }
  return { server: { address: addressOf(config.host, port), port, app, supervisor, close }, store }
}

/**
 * Attach the reader once its committed position is known: at once, or, while
 * the store does not answer, at the first retry that reads it. nginx serves
 * meanwhile; its log on disk holds the usage until then.
 * @returns a function that stops the retries
 */
function attachWhenCommitted (
  collector: TrafficCollector, retrySeconds: number, logger: Logger, attach: (wanted: () => boolean) => Promise<void>
): () => void {
  let timer: NodeJS.Timeout | undefined
  let stopped = false
  const attempt = (): void => {
    attach(() => !stopped).catch((err: unknown) => {
      if (stopped) return
      logger.error({ err: (err as Error).message }, 'cannot read the access log\'s committed position from the store: metering waits, the log keeps the usage')
      timer = setTimeout(attempt, retrySeconds * 1000)
    })
  }
  if (collector.state !== 'closed') attempt()
  return () => {
    stopped = true
    clearTimeout(timer)
  }
}

/**
 * The log's name in the store (`LogCursor.key`): a random id kept beside
 * the log, so it follows the file (a host renamed keeps its position; a
 * new log starts at 0).
 */
function logId (dir: string): string {
  const file = join(dir, 'log-id')
  try {
    const id = readFileSync(file, 'utf8').trim()
    if (/^[0-9a-f]{32}$/.test(id)) return id
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const id = randomBytes(16).toString('hex')
  writeFileSync(file, `${id}\n`, { mode: 0o600 })
  return id
}

/**
 * Who nginx's workers run as when streammeter runs as root: the owner of
 * `ENGINE_DIR` (chown it to an unprivileged user who can read the media).
 * Otherwise nginx cannot change user and runs them as streammeter's.
 */
function workerUser (dir: string): string | undefined {
  if (process.getuid?.() !== 0) return undefined
  const uid = statSync(dir).uid
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const [name, , id] = line.split(':')
      if (name !== undefined && Number(id) === uid && /^[A-Za-z0-9._-]+$/.test(name)) return name
    }
  } catch {}
  return undefined
}

/** The address a probe reaches a listener on `host` by. */
function probeHost (host: string): string {
  return host === '::' || host === '0.0.0.0' ? '127.0.0.1' : host
}

async function answers (url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) })
    await res.body?.cancel()
    return true
  } catch {
    return false
  }
}

/** A port free on `host` now (`PORT=0`: nginx cannot be asked for one and tell). */
async function freePort (host: string): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, host, () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })
}
