/**
 * Faults of the machine and the clients: another process holding the SQLite
 * lock, the wall clock jumping, a crowd of readers that never read.
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { ManualClock } from '../../src/meter/index.ts'
import { startTestServer } from '../helpers/test-server.ts'
import { FaultReceiver } from './fault-receiver.ts'
import { Clients, Scope, account, baseEnv, mediaDir, serve, stop, until } from './scenario.ts'
import type { Fault } from './scenario.ts'

const locker = new URL('../fixtures/sqlite-locker.ts', import.meta.url).pathname

function p99 (values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y)
  return Math.round(sorted[Math.floor(sorted.length * 0.99)] ?? 0)
}

export const loadFaults: Fault[] = [
  {
    name: 'SQLite lock held 10 s',
    run: async () => {
      const scope = new Scope()
      try {
        const receiver = await FaultReceiver.start()
        scope.defer(() => receiver.close())
        const media = mediaDir(scope)
        const db = join(scope.tempDir('db'), 'usage.db')
        const server = await serve(scope, baseEnv(media, receiver.url, { STORE_URL: `sqlite:${db}` }))
        const clients = new Clients()
        scope.defer(() => clients.close())
        await clients.get(server.url, '/small.ts', 'warm')
        const child = spawn(process.execPath, ['--import', 'tsx', locker, db, '10000'], { stdio: ['ignore', 'pipe', 'ignore'] })
        scope.defer(() => child.kill('SIGKILL'))
        let out = ''
        child.stdout.on('data', (c: Buffer) => { out += c.toString() })
        await until(() => out.includes('locked'), 10_000)
        const latencies: number[] = []
        await Promise.all([0, 1, 2, 3].map(async (k) => {
          for (let i = 0; !out.includes('released'); i++) {
            const started = performance.now()
            await clients.get(server.url, '/small.ts', `locked-${k}-${i % 5}`)
            latencies.push(performance.now() - started)
          }
        }))
        await until(() => receiver.billed().get('locked-0-0') === clients.received.get('locked-0-0'), 15_000)
        await stop(server)
        return account('SQLite lock held 10 s', clients, receiver.billed(), {
          note: `another process held the write lock 10 s; ${latencies.length} requests meanwhile, p99 ${p99(latencies)} ms`
        })
      } finally {
        await scope.close()
      }
    }
  },
  {
    name: 'clock ±1 day',
    run: async () => {
      const scope = new Scope()
      try {
        const receiver = await FaultReceiver.start()
        scope.defer(() => receiver.close())
        const media = mediaDir(scope)
        // In process: the collector's clock is the one that jumps (a real
        // process's clock cannot be moved without moving the machine's).
        const clock = new ManualClock(Date.now())
        const server = await startTestServer({ root: media, clock, meter: { minBytes: 0, reportInterval: 60, reportUrl: receiver.url } })
        scope.defer(() => server.close())
        const clients = new Clients()
        scope.defer(() => clients.close())
        const day = 24 * 3600_000
        const t0 = clock.now()
        const step = async (uid: string): Promise<void> => {
          await clients.get(server.url, '/seg.ts', uid)
          await server.app.idle()
          await server.collector.tick()
          await server.collector.deliverPending()
        }
        await step('before')
        clock.set(t0 + day) // forward a day
        await step('ahead')
        clock.set(t0 + 1000) // put right
        await step('corrected')
        clock.set(t0 - day) // back a day
        await step('behind')
        clock.set(t0 + 2000)
        await step('after')
        clock.advance(60_000)
        await step('next-window')
        await server.close()
        const sealed = receiver.kept.length
        return account('clock ±1 day', clients, receiver.billed(), {
          note: `in-process collector clock moved +1 day, back, −1 day, back; ${sealed} reports, a seal at every jump`
        })
      } finally {
        await scope.close()
      }
    }
  }
]
