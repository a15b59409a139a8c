/**
 * What every fault scenario shares: a scope that cleans up after it, media
 * of known sizes, clients that count the bytes they receive per uid, and the
 * accounting that turns "received" and "billed" into the suite's row.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { startCliServer } from '../helpers/cli-server.ts'
import { FaultReceiver } from './fault-receiver.ts'
import type { CliServer } from '../helpers/cli-server.ts'

/** One row of the fault table. */
export interface FaultRow {
  fault: string
  /** Body bytes the clients received, metered uids only. */
  delivered: number
  /** Bytes in the reports the receiver kept (deduplicated by report id). */
  billed: number
  /** Bytes delivered and never billed. */
  lost: number
  /** Bytes billed beyond what was delivered (under another report id). */
  doubled: number
  /** What docs/metering.md#rules lets a crash lose here (the last flush interval), 0 elsewhere. */
  allowedLoss: number
  /** Media requests made, and how many got no complete answer. */
  requests: number
  failed: number
  note: string
}

/** A scenario of the suite. */
export interface Fault {
  name: string
  run: () => Promise<FaultRow>
}

/** What every scenario starts with: all of it cleaned up when the scenario ends. */
export interface Setup {
  scope: Scope
  /** A report endpoint answering 200 until the scenario sets its `policy`. */
  receiver: FaultReceiver
  /** A directory with {@link MEDIA}. */
  media: string
  clients: Clients
  /** A `STORE_URL` for a new SQLite file. */
  sqliteUrl: () => string
}

/** A scenario named `name` whose `body` gets a fresh {@link Setup} on every run. */
export function fault (name: string, body: (setup: Setup) => Promise<FaultRow>): Fault {
  return {
    name,
    run: async () => {
      const scope = new Scope()
      try {
        const receiver = await FaultReceiver.start()
        scope.defer(() => receiver.close())
        const clients = new Clients()
        scope.defer(() => clients.close())
        const sqliteUrl = (): string => `sqlite:${join(scope.tempDir('db'), 'usage.db')}`
        return await body({ scope, receiver, media: mediaDir(scope), clients, sqliteUrl })
      } finally {
        await scope.close()
      }
    }
  }
}

/** Cleanup in reverse order of setup, whatever happened. */
export class Scope {
  readonly #undo: Array<() => unknown> = []

  defer (fn: () => unknown): void {
    this.#undo.push(fn)
  }

  tempDir (label: string): string {
    const dir = mkdtempSync(join(tmpdir(), `sm-fault-${label}-`))
    this.defer(() => rmSync(dir, { recursive: true, force: true }))
    return dir
  }

  async close (): Promise<void> {
    for (const fn of this.#undo.reverse()) {
      try {
        await fn()
      } catch {}
    }
  }
}

/** Sizes of the media every scenario serves. */
export const MEDIA = { 'seg.ts': 300_000, 'small.ts': 40_000, 'movie.mp4': 64 * 1024 * 1024 } as const

/** A directory with {@link MEDIA}. */
export function mediaDir (scope: Scope): string {
  const dir = scope.tempDir('media')
  for (const [name, size] of Object.entries(MEDIA)) writeFileSync(join(dir, name), Buffer.alloc(size, name.length))
  return dir
}

/** The settings of a streammeter under test: every byte reported, short windows. */
export function baseEnv (media: string, reportUrl: string, more: Record<string, string> = {}): Record<string, string> {
  return {
    ORIGIN_ROOT: media,
    TRAFFIC_REPORT_URL: reportUrl,
    TRAFFIC_MIN_BYTES: '0',
    TRAFFIC_REPORT_INTERVAL: '1',
    TRAFFIC_FLUSH_INTERVAL: '0.2',
    SHUTDOWN_GRACE: '10',
    ...more
  }
}

/** `streammeter serve` as a process, killed at the end of the scope if still running. */
export async function serve (scope: Scope, env: Record<string, string>): Promise<CliServer> {
  const server = await startCliServer(env)
  scope.defer(async () => {
    if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGKILL')
    await server.exited
  })
  return server
}

/** SIGTERM and wait for the exit status. */
export async function stop (server: CliServer): Promise<number | null> {
  server.child.kill('SIGTERM')
  return await server.exited
}

/** Clients that count, per uid, the body bytes they actually received. */
export class Clients {
  readonly received = new Map<string, number>()
  requests = 0
  failed = 0
  readonly #agent = new Agent({ connections: 64 })

  /** GET `path` as `uid` through `base`; a refused, failed or cut request counts as failed (its bytes still count). */
  async get (base: string, path: string, uid: string, headers: Record<string, string> = {}): Promise<number> {
    this.requests++
    let bytes = 0
    try {
      const res = await request(`${base}${path}${path.includes('?') ? '&' : '?'}uid=${encodeURIComponent(uid)}`, { dispatcher: this.#agent, headers })
      const ok = res.statusCode === 200 || res.statusCode === 206
      for await (const chunk of res.body as AsyncIterable<Buffer>) bytes += chunk.length
      if (!ok) {
        this.failed++
        return 0
      }
    } catch {
      this.failed++
    }
    if (bytes > 0) this.received.set(uid, (this.received.get(uid) ?? 0) + bytes)
    return bytes
  }

  /** Add bytes received outside {@link get} (a raw socket). */
  add (uid: string, bytes: number): void {
    if (bytes > 0) this.received.set(uid, (this.received.get(uid) ?? 0) + bytes)
  }

  async close (): Promise<void> {
    await this.#agent.close()
  }
}

/** Poll until `check` holds or `timeoutMs` passes; returns whether it held. */
export async function until (check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return true
    await sleep(50)
  }
  return await check()
}

export function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** The row for `delivered` against `billed`, per uid. */
export function account (fault: string, clients: Pick<Clients, 'received' | 'requests' | 'failed'>, billed: ReadonlyMap<string, number>,
  more: { allowedLoss?: number, note?: string } = {}): FaultRow {
  let lost = 0
  let doubled = 0
  let delivered = 0
  let total = 0
  for (const [uid, bytes] of clients.received) {
    delivered += bytes
    const b = billed.get(uid) ?? 0
    if (b < bytes) lost += bytes - b
    else doubled += b - bytes
    if (b !== bytes && process.env.FAULTS_DEBUG !== undefined) process.stderr.write(`  ${fault}: ${uid} received ${bytes}, billed ${b}\n`)
  }
  for (const [uid, bytes] of billed) {
    total += bytes
    if (!clients.received.has(uid)) doubled += bytes
  }
  return {
    fault,
    delivered,
    billed: total,
    lost,
    doubled,
    allowedLoss: more.allowedLoss ?? 0,
    requests: clients.requests,
    failed: clients.failed,
    note: more.note ?? ''
  }
}

/** The median of `values`, rounded. */
export function median (values: readonly number[]): number {
  return percentile(values, 0.5)
}

/** The 99th percentile of `values`, rounded. */
export function p99 (values: readonly number[]): number {
  return percentile(values, 0.99)
}

function percentile (values: readonly number[], q: number): number {
  const sorted = [...values].sort((x, y) => x - y)
  return Math.round(sorted[Math.floor(sorted.length * q)] ?? 0)
}

/** Whether a row meets the target: nothing doubled, nothing lost beyond what docs/metering.md#rules allows. */
export function meetsTarget (row: FaultRow): boolean {
  return row.doubled === 0 && row.lost <= row.allowedLoss
}
