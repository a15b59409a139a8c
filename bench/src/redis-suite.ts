/**
 * The `redis` benchmark: what one Redis carries (docs/scaling.md).
 *
 *   npm run bench:redis                          every part
 *   npm run bench:redis -- flush chunks          only some parts
 *
 * Parts: `flush` (RedisStore.flush of 10k and 100k distinct uids, creating
 * and merging), `chunks` (the same at other chunk sizes: the cost of a
 * smaller longest script), `seal` (a window of N qualified uids sealed into
 * reports and acknowledged), `memory` (Redis memory per stored uid), `e2e`
 * (two servers under load from undici loops, SIGTERM, reported bytes =
 * received bytes), `e2e-wrk` (the same under wrk, when installed) and
 * `fsync` (lease, flush and seal on redis-servers of its own with the AOF
 * off, `everysec`, `always`, and with a replica: what durability costs).
 *
 * Every part works under a key prefix of its own (`smbench:…`) and deletes
 * exactly those keys afterwards; nothing else on the server is touched. Run
 * against an otherwise idle Redis for clean numbers: INFO figures (script
 * time, used_memory) are server-wide.
 */
import { fixed, int, median, table } from './lib/format.ts'
import { describeMachine } from './lib/machine.ts'
import { RESULTS_DIR, writeResults } from './lib/results.ts'
import { runE2e } from './redis/e2e.ts'
import { haveWrk } from './redis/wrk.ts'
import type { E2eResult } from './redis/e2e.ts'
import { flushRounds } from './redis/flush.ts'
import { fsyncRows } from './redis/fsync.ts'
import type { FsyncRow } from './redis/fsync.ts'
import type { FlushRound, FlushSample } from './redis/flush.ts'
import { REDIS_URL, adminClient, slowlogThresholdUs } from './redis/ledger.ts'
import { memoryRounds } from './redis/memory.ts'
import type { MemoryRound } from './redis/memory.ts'
import { REPORT_MAX_UIDS, sealRounds } from './redis/seal.ts'
import type { SealRound } from './redis/seal.ts'
import { FLUSH_CHUNK_UIDS } from '../../src/store/redis-store.ts'

const PARTS = ['flush', 'chunks', 'seal', 'memory', 'e2e', 'e2e-wrk', 'fsync'] as const
type Part = (typeof PARTS)[number]

/** Timed rounds per measurement; medians are reported. */
const ROUNDS = 5
const FLUSH_UIDS = [10_000, 100_000] as const
/** Chunk sizes compared (uids per script), on flushes of CHUNKS_UIDS uids. */
const CHUNK_SIZES = [250, 500, 1000, 2000, 4000] as const
const CHUNKS_UIDS = 20_000
const SEAL_UIDS = [10_000, 100_000] as const
const MEMORY_UIDS = 100_000
const E2E = { seconds: 10, connections: 64, uids: 10_000 } as const

const progress = (line: string): void => { process.stderr.write(`${line}\n`) }

export async function runRedisSuite (ids: readonly string[] = []): Promise<boolean> {
  const unknown = ids.filter((id) => !(PARTS as readonly string[]).includes(id))
  if (unknown.length > 0) {
    process.stderr.write(`unknown redis part: ${unknown.join(', ')} (have ${PARTS.join(', ')})\n`)
    return false
  }
  const parts = new Set<Part>(ids.length === 0 ? PARTS : ids as Part[])
  const machine = describeMachine()
  const admin = adminClient()
  let server: string
  let slowlogUs: number
  try {
    const info = await admin.info('server')
    server = /redis_version:(\S+)/.exec(info)?.[1] ?? '?'
    slowlogUs = await slowlogThresholdUs(admin)
  } catch (err) {
    process.stderr.write(`redis benchmark: cannot reach ${REDIS_URL} (set BENCH_REDIS_URL): ${err instanceof Error ? err.message : String(err)}\n`)
    return false
  } finally {
    admin.disconnect()
  }
  const head = `redis benchmark: Redis ${server} at ${REDIS_URL}; node ${machine.node}, ${machine.cpu} x${machine.cpus}, ` +
    `load average ${fixed(machine.loadAverage)}; ${ROUNDS} rounds per row, medians`
  progress(head)

  const flush = new Map<number, FlushRound[]>()
  const chunks = new Map<number, FlushRound[]>()
  const seal = new Map<number, SealRound[]>()
  const memory: MemoryRound[][] = []
  const e2e: E2eResult[] = []
  let fsync: FsyncRow[] = []
  if (parts.has('flush')) for (const n of FLUSH_UIDS) flush.set(n, await flushRounds(n, ROUNDS, FLUSH_CHUNK_UIDS, progress))
  if (parts.has('chunks')) for (const c of CHUNK_SIZES) chunks.set(c, await flushRounds(CHUNKS_UIDS, ROUNDS, c, progress))
  if (parts.has('seal')) for (const n of SEAL_UIDS) seal.set(n, await sealRounds(n, ROUNDS, progress))
  if (parts.has('memory')) {
    memory.push(await memoryRounds(MEMORY_UIDS, 'pending', ROUNDS, progress))
    memory.push(await memoryRounds(MEMORY_UIDS, 'qualified', ROUNDS, progress))
  }
  if (parts.has('e2e')) e2e.push(await runE2e({ ...E2E, loader: 'undici' }, progress))
  if (parts.has('e2e-wrk')) {
    if (haveWrk()) e2e.push(await runE2e({ ...E2E, loader: 'wrk' }, progress))
    else progress('  e2e-wrk: no wrk on this machine (apt-get install wrk); skipped')
  }
  if (parts.has('fsync')) fsync = await fsyncRows(progress)

  const out: string[] = [head, '']
  if (flush.size > 0) {
    out.push(`flush: RedisStore.flush of N distinct uids, ${int(FLUSH_CHUNK_UIDS)} uids per script, all scripts in one pipeline`, flushTable(flush, 'uids', (n) => n, slowlogUs), '')
  }
  if (chunks.size > 0) {
    out.push(`chunk size: flushes of ${int(CHUNKS_UIDS)} uids at other chunk sizes (the store's default: ${int(FLUSH_CHUNK_UIDS)})`, flushTable(chunks, 'uids/script', () => CHUNKS_UIDS, slowlogUs), '')
  }
  if (seal.size > 0) out.push(`seal: N qualified uids sealed into reports of ${int(REPORT_MAX_UIDS)} uids, then each report head + ack`, sealTable(seal, slowlogUs), '')
  if (memory.length > 0) out.push('memory: Redis memory per stored uid (1 IPv4, 1 session, 2 file types per uid)', memoryTable(memory), '')
  if (e2e.length > 0) out.push(e2eText(e2e), '')
  if (fsync.length > 0) {
    out.push('fsync: the same writes on redis-servers of its own (this machine\'s disk), medians of wall ms', table(
      ['Redis', 'store says', 'lease renewal', 'flush 1,000 uids', 'flush 10,000 uids', 'seal 1,000 uids'],
      fsync.map((r) => [r.mode, r.durability, fixed(r.leaseMs, 3), fixed(r.flush1kMs, 1), fixed(r.flush10kMs, 1), fixed(r.seal1kMs, 1)])
    ), '')
  }
  out.push(
    'ms: wall time of the call in this process (JSON encoding, network, Lua, decoding). Lua ms: time Redis spent in',
    '  scripts meanwhile (INFO commandstats, whole server: other clients\' scripts count too). uids/s: uids merged',
    '  per second of wall time; per Lua-s: per second of Redis script time, what one Redis core can merge.',
    '  per script: Lua ms / scripts; longest: our longest script in the SLOWLOG (only those over its threshold',
    `  of ${fixed(slowlogUs / 1000, 0)} ms appear). round-trips: writes to the socket (a pipeline is one).`
  )
  const text = out.join('\n')
  process.stdout.write(`\n${text}\n`)

  const ok = [...flush.values(), ...chunks.values()].every((rounds) => rounds.every((r) => r.ok)) &&
    [...seal.values()].every((rounds) => rounds.every((r) => r.ok)) &&
    memory.every((rounds) => rounds.every((r) => r.ok)) &&
    e2e.every((r) => r.ok)
  const path = writeResults('redis', {
    suite: 'redis',
    createdAt: new Date().toISOString(),
    machine,
    redis: { url: REDIS_URL, version: server, slowlogUs },
    config: { rounds: ROUNDS, flushChunkUids: FLUSH_CHUNK_UIDS, reportMaxUids: REPORT_MAX_UIDS, e2e: E2E },
    ok,
    flush: Object.fromEntries(flush),
    chunks: Object.fromEntries(chunks),
    seal: Object.fromEntries(seal),
    memory,
    e2e,
    fsync
  })
  process.stdout.write(`\nresults: ${path.startsWith(RESULTS_DIR) ? `bench/results/${path.slice(RESULTS_DIR.length)}` : path}\n`)
  return ok
}

function slowest (samples: readonly FlushSample[], slowlogUs: number): string {
  const logged = samples.map((s) => s.slowestMs).filter((v): v is number => v !== undefined)
  if (logged.length === 0) return `< ${fixed(slowlogUs / 1000, 0)}`
  return fixed(Math.max(...logged), 1)
}

/** `uidsOf(key)`: the uids of one flush of the row keyed `key` (by uids, or by chunk size). */
function flushTable (rows: ReadonlyMap<number, FlushRound[]>, label: string, uidsOf: (key: number) => number, slowlogUs: number): string {
  const body: string[][] = []
  for (const [key, rounds] of rows) {
    for (const phase of ['create', 'merge'] as const) {
      const samples = rounds.map((r) => r[phase])
      const uids = uidsOf(key)
      const ms = median(samples.map((s) => s.ms))
      const luaMs = median(samples.map((s) => s.luaMs))
      body.push([
        `${int(key)} ${phase}`,
        samples.map((s) => fixed(s.ms, 0)).join(' '),
        fixed(ms, 1),
        int(uids / (ms / 1000)),
        fixed(luaMs, 1),
        int(uids / (luaMs / 1000)),
        int(median(samples.map((s) => s.chunks))),
        fixed(median(samples.map((s) => s.luaMs / s.chunks)), 2),
        slowest(samples, slowlogUs),
        int(median(samples.map((s) => s.roundTrips))),
        rounds.every((r) => r.ok) ? 'OK' : 'FAIL'
      ])
    }
  }
  return table([label, 'rounds (ms)', 'ms', 'uids/s', 'Lua ms', 'per Lua-s', 'scripts', 'per script', 'longest', 'round-trips', 'check'], body)
}

function sealTable (rows: ReadonlyMap<number, SealRound[]>, slowlogUs: number): string {
  const body: string[][] = []
  for (const [uids, rounds] of rows) {
    const sealMs = median(rounds.map((r) => r.sealMs))
    const ackMs = median(rounds.map((r) => r.ackMs))
    const reports = rounds[0]?.reports ?? 0
    const logged = rounds.map((r) => r.slowestMs).filter((v): v is number => v !== undefined)
    body.push([
      int(uids),
      rounds.map((r) => fixed(r.sealMs, 0)).join(' '),
      fixed(sealMs, 1),
      int(uids / (sealMs / 1000)),
      logged.length === 0 ? `< ${fixed(slowlogUs / 1000, 0)}` : fixed(Math.max(...logged), 1),
      int(reports),
      fixed(ackMs, 1),
      int(reports / (ackMs / 1000)),
      int(reports / ((sealMs + ackMs) / 1000)),
      int(median(rounds.map((r) => r.outboxBytesPerUid))),
      rounds.every((r) => r.ok) ? 'OK' : 'FAIL'
    ])
  }
  return table(['qualified uids', 'seal rounds (ms)', 'seal ms', 'uids/s', 'longest', 'reports', 'acks ms', 'acks/s', 'reports/s (seal+acks)', 'outbox B/uid', 'check'], body)
}

function memoryTable (rows: readonly MemoryRound[][]): string {
  return table(['stored uids', 'keys B/uid rounds', 'keys B/uid', 'used_memory B/uid', 'check'], rows.map((rounds) => [
    `${int(rounds[0]?.uids ?? 0)} ${rounds[0]?.state ?? ''}`,
    rounds.map((r) => fixed(r.keysBytesPerUid, 0)).join(' '),
    fixed(median(rounds.map((r) => r.keysBytesPerUid)), 0),
    fixed(median(rounds.map((r) => r.usedMemoryPerUid)), 0),
    rounds.every((r) => r.ok) ? 'OK' : 'FAIL'
  ]))
}

function e2eText (runs: readonly E2eResult[]): string {
  const first = runs[0] as E2eResult
  return [
    `end to end: 2 x streammeter serve (one Redis prefix, TRAFFIC_MIN_BYTES=0), ${first.connections} connections, ` +
      `${int(first.uids)} uids, 4 KiB files, ${E2E.seconds} s of load, then SIGTERM one after the other`,
    table(['loader', 'requests', 'req/s', 'non-200', 'bytes received', 'bytes reported', 'reports', 'left in store', 'check'], runs.map((r) => [
      r.loader, int(r.requests), int(r.requestsPerSec), int(r.failures), int(r.bytesReceived), int(r.bytesReported), int(r.reports),
      int(r.bytesLeftInStore),
      !r.ok ? 'FAIL' : r.inFlightBound === 0 ? 'OK: reported = received' : `OK: reported - received = ${int(r.bytesReported - r.bytesReceived)} <= ${int(r.inFlightBound)} in flight`
    ]))
  ].join('\n')
}
