/**
 * End to end: two `streammeter serve` processes sharing one Redis prefix,
 * loaded for a while with 4 KiB files for 10,000 uids over 64 connections,
 * then stopped with SIGTERM; the reports a `streammeter sink` received must
 * add up to exactly the body bytes the load generator received.
 *
 * Two load generators. `undici` (in this process): every loop stops issuing
 * at the deadline and finishes the response it is reading, so the check is
 * exact. `wrk` (src/redis/wrk.ts): faster, so it measures throughput better,
 * but it stops at its deadline with responses in flight that the servers
 * have already counted (bytes handed to the socket) and wrk has not; its
 * check is a bound: received <= reported <= received + one file per connection.
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { Pool, request } from 'undici'
import { DEFAULT_POLICY, uidOf } from './input.ts'
import { REDIS_URL, adminClient, benchPrefix, deletePrefix, openBenchStore } from './ledger.ts'
import { wrkLoad } from './wrk.ts'

const CLI = fileURLToPath(new URL('../../../src/cli/main.ts', import.meta.url))
const FILE_BYTES = 4096
const FILES = 256

export interface E2eOptions {
  loader: 'undici' | 'wrk'
  /** Seconds of load. */
  seconds: number
  connections: number
  uids: number
}

export interface E2eResult {
  loader: E2eOptions['loader']
  seconds: number
  connections: number
  uids: number
  requests: number
  /** Responses other than 200 (none expected). */
  failures: number
  requestsPerSec: number
  /** Body bytes of the 200 responses, as the load generator read them. */
  bytesReceived: number
  /** Sum of summary.total_bytes over the unique reports the sink received. */
  bytesReported: number
  reports: number
  /** Usage still in the store after both stopped (qualified + pending bytes, outbox): 0 expected. */
  bytesLeftInStore: number
  /** Most bytes the servers may have counted beyond what the loader read (wrk's responses in flight at its deadline). */
  inFlightBound: number
  ok: boolean
}

/** A child process of ours, its stderr kept, and the URL from its "listening on" line. */
interface Service {
  child: ChildProcess
  url: string
  stderr: () => string
}

function startService (args: readonly string[], env: NodeJS.ProcessEnv): Promise<Service> {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] })
  let text = ''
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${args[0] ?? ''} did not start within 20 s: ${text}`))
    }, 20_000)
    child.stderr?.setEncoding('utf8')
    child.stderr?.on('data', (chunk: string) => {
      text += chunk
      const url = /listening on (http:\/\/\S+)/.exec(text)?.[1]
      if (url !== undefined) {
        clearTimeout(timer)
        resolve({ child, url, stderr: () => text })
      }
    })
    child.on('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`${args[0] ?? ''} exited (${String(code)}) before listening: ${text}`))
    })
  })
}

/** SIGTERM one process (by its pid) and wait for it to exit; SIGKILL after `graceMs`. Resolves its exit code. */
function stop (service: Service, graceMs: number): Promise<number | null> {
  const { child } = service
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode)
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
    child.once('exit', (code) => {
      clearTimeout(timer)
      resolve(code)
    })
    child.kill('SIGTERM')
  })
}

/** xorshift32: the same sequence of files and uids on every run. */
function random (seed: number): () => number {
  let x = seed >>> 0 || 1
  return () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return (x >>> 0) / 4294967296
  }
}

/** `connections` loops, half on each server, until `deadline`; each loop finishes its last response. */
async function load (urls: readonly string[], options: E2eOptions, deadline: number): Promise<{ requests: number, failures: number, bytes: number }> {
  const pools = urls.map((url) => new Pool(url, { connections: Math.ceil(options.connections / urls.length), pipelining: 1 }))
  let requests = 0
  let failures = 0
  let bytes = 0
  const loop = async (i: number): Promise<void> => {
    const pool = pools[i % pools.length] as Pool
    const next = random(0x5eed + i)
    while (performance.now() < deadline) {
      const file = `seg-${String(Math.floor(next() * FILES)).padStart(3, '0')}.ts`
      const uid = uidOf(Math.floor(next() * options.uids))
      const res = await pool.request({ method: 'GET', path: `/${file}?uid=${uid}` })
      let got = 0
      for await (const chunk of res.body) got += (chunk as Buffer).length
      requests++
      if (res.statusCode === 200) bytes += got
      else failures++
    }
  }
  try {
    await Promise.all(Array.from({ length: options.connections }, (_, i) => loop(i)))
  } finally {
    await Promise.all(pools.map((p) => p.close()))
  }
  return { requests, failures, bytes }
}

export async function runE2e (options: E2eOptions, progress: (line: string) => void): Promise<E2eResult> {
  const root = mkdtempSync(join(tmpdir(), 'smbench-media-')) // the media, and wrk's script
  for (let i = 0; i < FILES; i++) writeFileSync(join(root, `seg-${String(i).padStart(3, '0')}.ts`), randomBytes(FILE_BYTES))
  const prefix = benchPrefix('e2e')
  const admin = adminClient()
  const started: Service[] = []
  try {
    const baseEnv = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' }
    const sink = await startService(['sink', '--port', '0'], baseEnv)
    started.push(sink)
    const serveEnv = {
      ...baseEnv,
      PORT: '0',
      HOST: '127.0.0.1',
      ORIGIN_ROOT: root,
      STORE_URL: REDIS_URL,
      STORE_PREFIX: prefix,
      TRAFFIC_MIN_BYTES: '0', // every byte is reported: the totals must match exactly
      TRAFFIC_REPORT_INTERVAL: '2',
      TRAFFIC_REPORT_URL: `${sink.url}/usage`,
      SHUTDOWN_GRACE: '15',
      LOG_LEVEL: 'warn'
    }
    const servers = await Promise.all([startService(['serve'], serveEnv), startService(['serve'], serveEnv)])
    started.push(...servers)
    progress(`  e2e (${options.loader}): 2 servers (${servers.map((s) => s.url).join(', ')}), sink ${sink.url}, prefix ${prefix}; ${options.seconds} s of load`)

    const urls = servers.map((s) => s.url)
    const t0 = performance.now()
    const loaded = options.loader === 'wrk'
      ? await wrkLoad(urls, options.connections, options.seconds, FILES, options.uids, root)
      : await load(urls, options, t0 + options.seconds * 1000)
    const elapsed = (performance.now() - t0) / 1000

    // One after the other: the reporter seals and delivers its final window
    // and releases the lease; the second then takes the lease on its way out
    // and seals what it flushed last. Stopped together, the second's last
    // flush could land after the first's final seal and wait for the next start.
    for (const server of servers) {
      const code = await stop(server, 30_000)
      if (code !== 0) progress(`  e2e: a server exited with ${String(code)}: ${server.stderr().slice(-2000)}`)
    }

    const res = await request(`${sink.url}/reports`)
    const rows = await res.body.json() as Array<{ report_id: string, body: { summary: { total_bytes: number } } }>
    const seen = new Set<string>()
    let reported = 0
    for (const row of rows) {
      if (seen.has(row.report_id)) continue
      seen.add(row.report_id)
      reported += row.body.summary.total_bytes
    }
    const store = await openBenchStore(prefix, { ...DEFAULT_POLICY, minBytes: 0 })
    let left = 0
    try {
      const summary = await store.summary(0)
      left = summary.qualifiedBytes + summary.pendingBytes + (await store.outboxStats()).pendingBytes
    } finally {
      await store.close()
    }
    const inFlightBound = options.loader === 'wrk' ? options.connections * FILE_BYTES : 0
    return {
      loader: options.loader,
      seconds: elapsed,
      connections: options.connections,
      uids: options.uids,
      requests: loaded.requests,
      failures: loaded.failures,
      requestsPerSec: loaded.requests / elapsed,
      bytesReceived: loaded.bytes,
      bytesReported: reported,
      reports: seen.size,
      bytesLeftInStore: left,
      inFlightBound,
      ok: loaded.failures === 0 && loaded.bytes > 0 && left === 0 && reported >= loaded.bytes && reported <= loaded.bytes + inFlightBound
    }
  } finally {
    for (const service of started.reverse()) await stop(service, 5000)
    await deletePrefix(admin, prefix)
    await admin.quit()
    rmSync(root, { recursive: true, force: true })
  }
}
