/**
 * Faults of the machine and the clients: another process holding the SQLite
 * lock, the wall clock jumping, a crowd of readers that never read.
 */
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { request } from 'undici'
import { join } from 'node:path'
import { ManualClock } from '../../src/meter/index.ts'
import { startTestServer } from '../helpers/test-server.ts'
import { account, baseEnv, fault, median, p99, serve, stop, until } from './scenario.ts'
import type { Fault } from './scenario.ts'

const locker = new URL('../fixtures/sqlite-locker.ts', import.meta.url).pathname

/** Resident set size of a process, bytes. */
function rss (pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024
}

/**
 * A client that asks for `path` and never reads; `drain()` reads what reached
 * it and waits for the close, and says whether the connection ended in a
 * reset instead (the kernel aborts connections under TCP memory pressure,
 * dropping what it had accepted for them).
 */
function stalledReader (port: number, path: string, uid: string, ip: string): { drain: () => Promise<{ bytes: number, reset: boolean }> } {
  const socket = connect(port, '127.0.0.1')
  socket.pause()
  let reset = false
  socket.on('error', () => { reset = true })
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()))
  socket.write(`GET ${path}?uid=${uid} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: ${ip}\r\n\r\n`)
  return {
    drain: async () => {
      let bytes = 0
      let head = -1
      let buffered = Buffer.alloc(0)
      socket.on('data', (chunk: Buffer) => {
        if (head >= 0) {
          bytes += chunk.length
          return
        }
        buffered = Buffer.concat([buffered, chunk])
        const end = buffered.indexOf('\r\n\r\n')
        if (end >= 0) {
          head = end + 4
          bytes += buffered.length - head
        }
      })
      socket.resume()
      await closed
      return { bytes, reset }
    }
  }
}

/** The kernel's count of connections aborted for lack of TCP memory (`TCPAbortOnMemory`). */
function abortsOnMemory (): number {
  const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n')
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const names = (lines[i] as string).split(' ')
    const values = (lines[i + 1] as string).split(' ')
    const at = names.indexOf('TCPAbortOnMemory')
    if (at > 0) return Number(values[at])
  }
  return 0
}

export const loadFaults: Fault[] = [
  fault('SQLite lock held 10 s', async ({ scope, receiver, media, clients }) => {
    const db = join(scope.tempDir('db'), 'usage.db')
    const server = await serve(scope, baseEnv(media, receiver.url, { STORE_URL: `sqlite:${db}` }))
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
  }),
  fault('clock ±1 day', async ({ scope, receiver, media, clients }) => {
    // In process: the collector's clock is the one that jumps (a real
    // process's clock cannot be moved without moving the machine's).
    const clock = new ManualClock(Date.now())
    const server = await startTestServer({ root: media, clock, meter: { minBytes: 0, reportInterval: 60, reportUrl: receiver.url } })
    scope.defer(() => server.close())
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
  }),
  fault('1,000 stalled readers', async ({ scope, receiver, media, clients, sqliteUrl }) => {
    const server = await serve(scope, baseEnv(media, receiver.url, {
      STORE_URL: sqliteUrl(),
      SEND_TIMEOUT: '3',
      TRUSTED_PROXIES: '127.0.0.1',
      ADMIN_TOKEN: 'fault-suite-admin' // loopback is a trusted proxy here: admin needs the token
    }))
    const stalledLive = async (): Promise<number> => {
      const res = await request(`${server.url}/active-transfers`, { headers: { authorization: 'Bearer fault-suite-admin' } })
      const { transfers } = await res.body.json() as { transfers: Array<{ uid: string | null }> }
      return transfers.filter((x) => x.uid?.startsWith('stalled-') === true).length
    }
    const pid = server.child.pid as number
    const port = Number(new URL(server.url).port)
    const before = rss(pid)
    // 1,000 players from 1,000 addresses, each asking for a 64 MiB file and reading nothing.
    const abortsBefore = abortsOnMemory()
    const readers = Array.from({ length: 1000 }, (_, i) =>
      ({ uid: `stalled-${i}`, reader: stalledReader(port, '/movie.mp4', `stalled-${i}`, `10.${(i >> 8) & 255}.${i & 255}.7`) }))
    clients.requests += readers.length
    // Until the send timeout has cut every one of them (the server fills
    // 1,000 socket buffers first, gigabytes of copying, then waits).
    let peak = before
    const latencies: number[] = []
    const startedAt = Date.now()
    let live = readers.length
    while (live > 0 && Date.now() - startedAt < 60_000) {
      peak = Math.max(peak, rss(pid))
      const started = performance.now()
      await clients.get(server.url, '/small.ts', 'bystander')
      latencies.push(performance.now() - started)
      live = await stalledLive()
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    const cutAfter = (Date.now() - startedAt) / 1000
    const got = await Promise.all(readers.map(async ({ uid, reader }) => ({ uid, ...await reader.drain() })))
    clients.failed += got.length // every one was cut by SEND_TIMEOUT, as it should be
    // Client and proxy share this machine's tcp_mem: 1,000 full socket
    // buffers on both ends come near it, and the kernel then aborts
    // connections (TCPAbortOnMemory), dropping what it had accepted for
    // them: at most a send buffer (tcp_wmem's 4 MiB) each. Those bytes were
    // handed to the socket, so they are billed (docs/metering.md#rules), and never reach
    // the client. Such connections are set apart, not compared: those that
    // saw a reset, and, when the kernel counted aborts, as many readers billed
    // up to 4 MiB more than they received.
    const lostByKernel = new Set(got.filter((g) => g.reset).map((g) => g.uid))
    await until(() => got.every((g) => lostByKernel.has(g.uid) || (receiver.billed().get(g.uid) ?? 0) >= g.bytes), 15_000)
    await stop(server)
    const aborts = abortsOnMemory() - abortsBefore
    const billed = receiver.billed()
    const over = got.filter((g) => !lostByKernel.has(g.uid) && (billed.get(g.uid) ?? 0) > g.bytes && (billed.get(g.uid) ?? 0) - g.bytes <= 4 * 1048576)
    if (aborts > 0 && over.length <= aborts - lostByKernel.size) for (const g of over) lostByKernel.add(g.uid)
    for (const { uid, bytes } of got) if (!lostByKernel.has(uid)) clients.add(uid, bytes)
    const compared = new Map([...billed].filter(([uid]) => !lostByKernel.has(uid)))
    let setApart = 0
    for (const g of got) if (lostByKernel.has(g.uid)) setApart += (billed.get(g.uid) ?? 0) - g.bytes
    const mib = (n: number): string => (n / 1048576).toFixed(0)
    const kernel = aborts === 0 && lostByKernel.size === 0
      ? 'no connection lost to TCP memory pressure'
      : `the kernel aborted ${aborts} connection(s) for lack of TCP memory; ${lostByKernel.size} set apart, their ${setApart.toLocaleString('en-US')} bytes billed as handed to the socket and never received`
    return account('1,000 stalled readers', clients, compared, {
      note: `SEND_TIMEOUT=3: ${live === 0 ? 'all 1,000' : `${1000 - live} of 1,000`} cut within ${cutAfter.toFixed(1)} s, each billed what reached it; ${kernel}; RSS ${mib(before)} → peak ${mib(peak)} MiB; another client meanwhile: median ${median(latencies)} ms, worst ${Math.round(Math.max(...latencies))} ms`
    })
  })
]
