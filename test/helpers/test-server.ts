import type { AddressInfo } from 'node:net'
import { ManualClock, TrafficCollector, policyOf, resolveMeterOptions } from '../../src/meter/index.ts'
import type { MeterOptions } from '../../src/meter/index.ts'
import { MemoryStore } from '../../src/store/index.ts'
import type { UsageStore } from '../../src/meter/index.ts'
import { buildApp } from '../../src/server/app.ts'
import type { App, AppOptions } from '../../src/server/app.ts'
import { FsOrigin } from '../../src/server/origin/fs-origin.ts'
import { HttpOrigin } from '../../src/server/origin/http-origin.ts'
import type { Origin } from '../../src/server/origin/origin.ts'
import { addReportBytes } from './report-bytes.ts'

/** A streammeter server for a test: real sockets on 127.0.0.1, port 0. */
export interface TestServer {
  url: string
  port: number
  app: App
  collector: TrafficCollector
  store: UsageStore
  close (): Promise<void>
}

/** Options: an origin (directory or URL), meter options, and app options. */
export interface TestServerOptions extends Omit<Partial<AppOptions>, 'origin' | 'store' | 'collector'> {
  root?: string
  originUrl?: string
  /** An origin of the test's own (instead of `root` or `originUrl`). */
  origin?: Origin
  originTimeout?: number
  meter?: Partial<MeterOptions>
  clock?: ManualClock
  /** Start the collector's timers. @default false (tests drive flush/seal by hand) */
  startCollector?: boolean
}

export async function startTestServer (o: TestServerOptions): Promise<TestServer> {
  const meter = resolveMeterOptions({ workerId: 'test', minBytes: 0, ...o.meter })
  const store = new MemoryStore(policyOf(meter))
  let collector!: TrafficCollector
  const origin = o.origin ?? (o.originUrl !== undefined
    ? new HttpOrigin({ baseUrl: o.originUrl, timeout: o.originTimeout ?? 5 })
    : new FsOrigin(o.root ?? '.'))
  const app = buildApp({
    ...o,
    origin,
    store,
    collector: (s) => {
      collector = new TrafficCollector(meter, { store: s, ...(o.clock !== undefined ? { clock: o.clock } : {}) })
      return collector
    }
  })
  if (o.startCollector === true) collector.start()
  await app.fastify.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.fastify.server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    app,
    collector,
    store,
    close: () => app.close()
  }
}

/** Bytes per uid the collector has seen so far (flushes first; counts store records and outbox). */
export async function meteredBytes (server: TestServer): Promise<Map<string, number>> {
  await server.app.idle()
  await server.collector.flush()
  const totals = new Map<string, number>()
  for (const r of await server.store.records()) totals.set(r.uid, (totals.get(r.uid) ?? 0) + r.bytes)
  for (const e of await server.store.outbox()) addReportBytes(totals, e.body)
  return totals
}
