/**
 * What durability costs the Redis store (docs/scaling.md, "Redis settings"):
 * the same writes on redis-server processes of the benchmark's own, started
 * on a free port in a temporary directory (the machine's disk) with the AOF
 * off, with `appendfsync everysec`, with `appendfsync always`, and with the
 * AOF off and one replica (the store then WAITs for it after a seal). Needs
 * `redis-server` on PATH; nothing else is touched.
 *
 * Per mode: a lease renewal (the smallest write), a flush of 1,000 and of
 * 10,000 distinct uids (the second flush of the same uids: merges), and a
 * seal of 1,000 qualified uids into one report with the store's confirmation
 * that it is durable. Wall time in this process, medians.
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { Redis } from 'ioredis'
import { renderReports } from '../../../src/meter/index.ts'
import type { ReportContext } from '../../../src/meter/index.ts'
import { RedisStore } from '../../../src/store/redis-store.ts'
import { median } from '../lib/format.ts'
import { DEFAULT_POLICY, makeDeltas } from './input.ts'

/** One way of running Redis. */
interface Mode {
  name: string
  args: string[]
  replica?: boolean
}

export const FSYNC_MODES: readonly Mode[] = [
  { name: 'no AOF', args: ['--appendonly', 'no'] },
  { name: 'AOF, appendfsync everysec', args: ['--appendonly', 'yes', '--appendfsync', 'everysec'] },
  { name: 'AOF, appendfsync always', args: ['--appendonly', 'yes', '--appendfsync', 'always'] },
  { name: 'no AOF, 1 replica (WAIT)', args: ['--appendonly', 'no'], replica: true }
]

/** Medians of one mode, ms. */
export interface FsyncRow {
  mode: string
  /** What the store says about the server (`aof-always`, `fsync-everysec`…). */
  durability: string
  leaseMs: number
  flush1kMs: number
  flush10kMs: number
  seal1kMs: number
}

const LEASES = 200
const FLUSH_ROUNDS = 20
const SEAL_ROUNDS = 20
const policy = { ...DEFAULT_POLICY, minBytes: 0 }
const ctx: ReportContext = { workerId: 'bench', reportInterval: 300, minBytes: 0, maxUidsPerReport: 5000, newId: randomUUID }

export async function fsyncRows (progress: (line: string) => void): Promise<FsyncRow[]> {
  const rows: FsyncRow[] = []
  for (const mode of FSYNC_MODES) {
    progress(`  fsync: ${mode.name}`)
    const servers: OwnServer[] = []
    try {
      const master = await OwnServer.start(mode.args)
      servers.push(master)
      if (mode.replica === true) servers.push(await master.replica())
      rows.push(await measure(mode, master.url))
    } finally {
      for (const s of servers.reverse()) await s.stop()
    }
  }
  return rows
}

async function measure (mode: Mode, url: string): Promise<FsyncRow> {
  const flushes = await RedisStore.open(url, policy, { prefix: 'smbench:fsync:flush' })
  const seals = await RedisStore.open(url, policy, { prefix: 'smbench:fsync:seal' })
  try {
    const lease: number[] = []
    for (let i = 0; i < LEASES; i++) lease.push(await timed(() => flushes.leadership('bench', 60_000)))
    const flush1k: number[] = []
    const flush10k: number[] = []
    const t0 = Date.now()
    for (let r = 0; r < FLUSH_ROUNDS; r++) {
      await flushes.flush(makeDeltas(1000, 2 * r, t0))
      flush1k.push(await timed(() => flushes.flush(makeDeltas(1000, 2 * r + 1, t0))))
    }
    for (let r = 0; r < 5; r++) {
      await flushes.flush(makeDeltas(10_000, 2 * r, t0))
      flush10k.push(await timed(() => flushes.flush(makeDeltas(10_000, 2 * r + 1, t0))))
    }
    const seal1k: number[] = []
    for (let r = 0; r < SEAL_ROUNDS; r++) {
      await seals.flush(makeDeltas(1000, r, t0))
      seal1k.push(await timed(() => seals.seal({ now: t0 + r, intervalMs: 1000, force: true, render: (records, at) => renderReports(records, at, ctx) })))
      for (let head = await seals.outboxHead(); head !== undefined; head = await seals.outboxHead()) await seals.outboxAck(head.reportId, t0)
    }
    return {
      mode: mode.name,
      durability: seals.durability.code,
      leaseMs: median(lease),
      flush1kMs: median(flush1k),
      flush10kMs: median(flush10k),
      seal1kMs: median(seal1k)
    }
  } finally {
    await flushes.close()
    await seals.close()
  }
}

async function timed (fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now()
  await fn()
  return performance.now() - t0
}

/** A redis-server of the benchmark's own, in a temporary directory. */
class OwnServer {
  readonly url: string
  readonly #port: number
  readonly #dir: string
  readonly #child: ChildProcess

  private constructor (port: number, dir: string, child: ChildProcess) {
    this.#port = port
    this.url = `redis://127.0.0.1:${port}`
    this.#dir = dir
    this.#child = child
  }

  static async start (args: string[]): Promise<OwnServer> {
    const port = await freePort()
    const dir = mkdtempSync(join(tmpdir(), 'smbench-fsync-'))
    const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '',
      '--repl-diskless-sync-delay', '0', ...args], { stdio: 'ignore' })
    const server = new OwnServer(port, dir, child)
    await server.#ready()
    return server
  }

  /** A replica of this server, once it is online. */
  async replica (): Promise<OwnServer> {
    const replica = await OwnServer.start(['--appendonly', 'no', '--replicaof', '127.0.0.1', String(this.#port)])
    const client = new Redis(this.url)
    try {
      while (!/slave0:.*state=online/.test(await client.info('replication'))) await new Promise((resolve) => setTimeout(resolve, 50))
    } finally {
      client.disconnect()
    }
    return replica
  }

  async stop (): Promise<void> {
    if (this.#child.exitCode === null) {
      const exited = new Promise((resolve) => this.#child.once('exit', resolve))
      this.#child.kill('SIGKILL')
      await exited
    }
    rmSync(this.#dir, { recursive: true, force: true })
  }

  async #ready (): Promise<void> {
    const deadline = Date.now() + 10_000
    for (;;) {
      const client = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
      client.on('error', () => {})
      try {
        await client.connect()
        if (await client.ping() === 'PONG') return
      } catch {
        if (Date.now() > deadline || this.#child.exitCode !== null) throw new Error('redis-server did not start (is it on PATH?)')
        await new Promise((resolve) => setTimeout(resolve, 50))
      } finally {
        client.disconnect()
      }
    }
  }
}

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}
