import { request } from 'node:http'
import { Counter, Gauge } from 'prom-client'
import type { Registry } from 'prom-client'
import type { AccessLogReader } from './access-log-reader.ts'
import type { NginxSupervisor } from './nginx-supervisor.ts'

/** nginx's `stub_status` page, parsed. */
export interface NginxStatus {
  active: number
  accepted: number
  handled: number
  requests: number
  reading: number
  writing: number
  waiting: number
}

/**
 * Parse `stub_status`:
 * `Active connections: 1 \n server accepts handled requests\n 5 5 9 \nReading: 0 Writing: 1 Waiting: 0 `.
 * Undefined when the text is not that.
 */
export function parseStubStatus (text: string): NginxStatus | undefined {
  const m = /Active connections:\s*(\d+)\s+server accepts handled requests\s+(\d+)\s+(\d+)\s+(\d+)\s+Reading:\s*(\d+)\s+Writing:\s*(\d+)\s+Waiting:\s*(\d+)/.exec(text)
  if (m === null) return undefined
  const [active, accepted, handled, requests, reading, writing, waiting] = m.slice(1).map(Number) as [number, number, number, number, number, number, number]
  return { active, accepted, handled, requests, reading, writing, waiting }
}

/** Read nginx's counts over its status socket; undefined when nginx does not answer within 1 s. */
export async function readNginxStatus (socketPath: string): Promise<NginxStatus | undefined> {
  return await new Promise((resolve) => {
    const req = request({ socketPath, path: '/', timeout: 1000 }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { if (text.length < 4096) text += c })
      res.on('end', () => resolve(parseStubStatus(text)))
      res.on('error', () => resolve(undefined))
    })
    req.on('timeout', () => req.destroy())
    req.on('error', () => resolve(undefined))
    req.end()
  })
}

/**
 * The nginx engine's figures in `/metrics` (docs/endpoints.md#metrics):
 * nginx's connections by state and its totals (`stub_status`, read at
 * scrape time), whether it runs, and how often it was started again.
 */
export function watchNginx (registry: Registry, source: {
  supervisor: NginxSupervisor
  statusSocket: string
  /** The access-log reader, once attached. */
  log: () => Pick<AccessLogReader, 'generation' | 'rotations' | 'rotatedFiles'> | undefined
}): void {
  let last: Promise<NginxStatus | undefined> | undefined
  // One read per scrape, shared by the metrics below.
  const status = (): Promise<NginxStatus | undefined> => {
    last ??= readNginxStatus(source.statusSocket).finally(() => { setTimeout(() => { last = undefined }, 100).unref() })
    return last
  }
  registry.registerMetric(new Gauge({
    name: 'streammeter_nginx_connections',
    help: 'nginx client connections by state (active = reading + writing + waiting)',
    labelNames: ['state'],
    registers: [],
    async collect () {
      const s = await status()
      if (s === undefined) return
      this.set({ state: 'active' }, s.active)
      this.set({ state: 'reading' }, s.reading)
      this.set({ state: 'writing' }, s.writing)
      this.set({ state: 'waiting' }, s.waiting)
    }
  }))
  // One value each, read at scrape time; undefined leaves the metric empty.
  const gauges: Array<[string, string, () => number | undefined | Promise<number | undefined>]> = [
    ['streammeter_nginx_accepted_connections', 'connections nginx accepted since its master started (resets when it restarts)',
      async () => (await status())?.accepted],
    ['streammeter_nginx_handled_requests', 'requests nginx handled since its master started (resets when it restarts)',
      async () => (await status())?.requests],
    ['streammeter_nginx_up', '1 while the supervised nginx runs', () => source.supervisor.pid === undefined ? 0 : 1],
    ['streammeter_nginx_log_generation', 'generation of the access log being read (one more per rotation)',
      () => source.log()?.generation],
    ['streammeter_nginx_log_rotated_files',
      'rotated access-log files on disk: not read to their end, or not committed yet; growing means a writer holds one or the store is down',
      () => source.log()?.rotatedFiles]
  ]
  for (const [name, help, value] of gauges) {
    registry.registerMetric(new Gauge({
      name,
      help,
      registers: [],
      async collect () {
        const v = await value()
        if (v !== undefined) this.set(v)
      }
    }))
  }
  const counters: Array<[string, string, () => number]> = [
    ['streammeter_nginx_log_rotations_total', 'access-log rotations made by this process', () => source.log()?.rotations ?? 0],
    ['streammeter_nginx_restarts_total', 'times nginx was started again after it died', () => source.supervisor.restarts]
  ]
  for (const [name, help, value] of counters) {
    registry.registerMetric(new Counter({
      name,
      help,
      registers: [],
      collect () {
        this.reset()
        this.inc(value())
      }
    }))
  }
}
