/**
 * Crashes and stops: the proxy killed mid-download, the reporter killed
 * mid-delivery, Redis killed and restarted from its own files, SIGTERM
 * under load. Everything real: processes, sockets, signals.
 */
import { connect } from 'node:net'
import { request } from 'undici'
import type { CliServer } from '../helpers/cli-server.ts'
import { uniquePrefix, deletePrefix } from '../helpers/redis.ts'
import { FaultRedis } from './fault-redis.ts'
import { account, baseEnv, fault, serve, sleep, stop, until } from './scenario.ts'
import type { Fault } from './scenario.ts'

const MiB = 1024 * 1024

/** Bytes the socket of `uid`'s live transfer has taken, from /active-transfers (undefined when none). */
async function takenBy (server: CliServer, uid: string): Promise<number | undefined> {
  const res = await request(`${server.url}/active-transfers`)
  const { transfers } = await res.body.json() as { transfers: Array<{ uid: string | null, bytes: number }> }
  return transfers.find((x) => x.uid === uid)?.bytes
}

/** A player that reads `path` as `uid` at `rate` bytes/s over a raw socket; `drain()` reads the rest at full speed. */
function pacedReader (server: CliServer, path: string, uid: string, rate: number): { bytes: () => number, drain: () => Promise<number>, destroy: () => void } {
  const socket = connect(Number(new URL(server.url).port), '127.0.0.1')
  let received = 0
  let head = -1
  let paced = true
  let buffered = Buffer.alloc(0)
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()))
  socket.on('error', () => {})
  socket.on('data', (chunk: Buffer) => {
    if (head < 0) {
      buffered = Buffer.concat([buffered, chunk])
      const end = buffered.indexOf('\r\n\r\n')
      if (end < 0) return
      head = end + 4
      received += buffered.length - head
    } else {
      received += chunk.length
    }
    if (!paced) return
    socket.pause()
    setTimeout(() => socket.resume(), (chunk.length / rate) * 1000)
  })
  socket.write(`GET ${path}?uid=${uid} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)
  return {
    bytes: () => received,
    drain: async () => {
      paced = false
      socket.resume()
      await closed
      return received
    },
    destroy: () => socket.destroy()
  }
}

export const crashFaults: Fault[] = [
  fault('proxy kill -9 mid-download', async ({ scope, receiver, media, clients, sqliteUrl }) => {
    const env = baseEnv(media, receiver.url, { STORE_URL: sqliteUrl(), TRAFFIC_FLUSH_INTERVAL: '0.5' })
    const first = await serve(scope, env)
    const player = pacedReader(first, '/movie.mp4', 'slow', MiB)
    scope.defer(() => player.destroy())
    clients.requests++
    for (let i = 0; i < 5; i++) await Promise.all(['a', 'b', 'c'].map((uid) => clients.get(first.url, '/seg.ts', uid)))
    // The player goes on; what its socket had taken one interval before the kill is the bound.
    const samples: Array<{ at: number, bytes: number }> = []
    const endAt = Date.now() + 3000
    while (Date.now() < endAt) {
      const bytes = await takenBy(first, 'slow')
      if (bytes !== undefined) samples.push({ at: Date.now(), bytes })
      await sleep(50)
    }
    const killedAt = Date.now()
    first.child.kill('SIGKILL')
    await first.exited
    clients.add('slow', await player.drain())
    clients.failed++ // the download was cut
    const before = samples.filter((x) => x.at <= killedAt - 500 - 300).at(-1)?.bytes ?? 0
    // A restarted proxy on the same file seals and delivers what the first one stored.
    const second = await serve(scope, env)
    await until(() => (receiver.billed().get('a') ?? 0) === clients.received.get('a') && receiver.billed().has('slow'), 15_000)
    await stop(second)
    const delivered = clients.received.get('slow') ?? 0
    return account('proxy kill -9 mid-download', clients, receiver.billed(), {
      allowedLoss: delivered - before,
      note: `a 1 MiB/s player cut after ${(before / MiB).toFixed(1)}+ MiB; allowed: what its socket took in the last flush interval (0.5 s) before the kill`
    })
  }),
  fault('SIGTERM under load', async ({ scope, receiver, media, clients, sqliteUrl }) => {
    const server = await serve(scope, baseEnv(media, receiver.url, { STORE_URL: sqliteUrl() }))
    // Each client fetches back to back until the signal; what it had in
    // flight then must finish and be billed.
    const load = { running: true }
    const loops = Array.from({ length: 16 }, async (_, i) => {
      while (load.running) await clients.get(server.url, i % 4 === 0 ? '/movie.mp4' : '/seg.ts', `load-${i}`)
    })
    await sleep(2000)
    load.running = false
    const status = await stop(server)
    await Promise.all(loops)
    return account('SIGTERM under load', clients, receiver.billed(), {
      note: `16 clients, 4 of them on a 64 MiB file: every response in flight at SIGTERM finished within the grace and was billed; exit ${String(status)}`
    })
  }),
  fault('reporter kill -9 mid-delivery', async ({ scope, receiver, media, clients }) => {
    let held = ''
    receiver.policy = ({ id, seen }) => {
      if (held === '') held = id
      return id === held && seen === 0 ? 'hang' : 200
    }
    const prefix = uniquePrefix('fault-reporter')
    scope.defer(() => deletePrefix(prefix))
    const env = baseEnv(media, receiver.url, { STORE_URL: 'redis://127.0.0.1:6379', STORE_PREFIX: prefix })
    const servers = await Promise.all([serve(scope, env), serve(scope, env)])
    for (let i = 0; i < 3; i++) await Promise.all(servers.map((s, n) => clients.get(s.url, '/seg.ts', `via-${n}`)))
    await until(() => receiver.received.length > 0, 10_000)
    const sealedBy = JSON.parse(receiver.received[0]?.body ?? '{}') as { worker_id?: string }
    const victim = servers.find((s) => sealedBy.worker_id?.endsWith(`-${s.child.pid}`)) ?? servers[0]!
    const survivor = servers.find((s) => s !== victim)!
    await sleep(300) // everything flushed: this fault is about the delivery
    const killedAt = Date.now()
    victim.child.kill('SIGKILL')
    await victim.exited
    await until(() => receiver.kept.some((k) => k.id === held), 15_000)
    const takeover = Date.now() - killedAt
    for (let i = 0; i < 3; i++) await clients.get(survivor.url, '/seg.ts', 'after')
    await until(() => receiver.billed().get('after') === clients.received.get('after'), 10_000)
    await stop(survivor)
    return account('reporter kill -9 mid-delivery', clients, receiver.billed(), {
      note: `2 instances on Redis; the held report was delivered again by the survivor ${(takeover / 1000).toFixed(1)} s after the kill, same id and body`
    })
  }),
  fault('Redis kill -9, restart from AOF', async ({ scope, receiver, media, clients }) => {
    const redis = await FaultRedis.start()
    scope.defer(() => redis.destroy())
    // The first POST of each of the first two reports is held: Redis dies while they are in flight.
    receiver.policy = ({ n }) => n <= 2 ? { status: 503, delayMs: 1500 } : 200
    const env = baseEnv(media, receiver.url, { STORE_URL: redis.url })
    const servers = await Promise.all([serve(scope, env), serve(scope, env)])
    const load = { running: true }
    const traffic = Promise.all(servers.flatMap((s, n) => [0, 1].map(async (k) => {
      for (let i = 0; load.running; i++) {
        await clients.get(s.url, '/seg.ts', `r${n}-${k}-${i % 3}`)
        await sleep(20)
      }
    })))
    const kills: number[] = []
    for (const waitMs of [1500, 2200, 3100]) {
      await sleep(waitMs)
      kills.push(receiver.received.length)
      await redis.kill()
      await sleep(1000)
      await redis.restart()
    }
    await sleep(1500)
    load.running = false
    await traffic
    await until(() => {
      const billed = receiver.billed()
      return [...clients.received].every(([uid, bytes]) => (billed.get(uid) ?? 0) >= bytes)
    }, 20_000)
    await Promise.all(servers.map(stop))
    return account('Redis kill -9, restart from AOF', clients, receiver.billed(), {
      note: `2 instances; Redis (appendfsync always) killed 3 times under load, 1 s down each, with ${kills.join('/')} reports POSTed so far`
    })
  })
]
