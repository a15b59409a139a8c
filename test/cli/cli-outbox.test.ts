import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { main } from '../../src/cli/main.ts'
import type { Env } from '../../src/config/index.ts'
import { policyOf, resolveMeterOptions } from '../../src/meter/index.ts'
import type { UsageStore } from '../../src/meter/index.ts'
import { SqliteStore } from '../../src/store/index.ts'
import { RedisStore } from '../../src/store/redis-store.ts'
import { REDIS_URL, cleanupPrefix, redisOrSkip, uniquePrefix } from '../helpers/redis.ts'

const dirs: string[] = []
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }) })
function tempDir (): string {
  const dir = mkdtempSync(join(tmpdir(), 'sm-cli-outbox-'))
  dirs.push(dir)
  return dir
}

const POLICY = policyOf(resolveMeterOptions({}))
const T0 = Date.UTC(2026, 10, 26, 9, 5, 0)
const SECRET = 'api-key-not-in-output'

interface Run { code: number, out: string, err: string }

/** `main()` in-process with captured output. */
async function cli (argv: string[], env: Env, cwd: string): Promise<Run> {
  const r: Run = { code: -1, out: '', err: '' }
  r.code = await main(['outbox', ...argv], { TRAFFIC_API_KEY: SECRET, ...env }, {
    cwd,
    stdout: { write: (s: string) => { r.out += s } },
    stderr: { write: (s: string) => { r.err += s } },
    startServer: () => assert.fail('no server'),
    exit: (code) => assert.fail(`forced exit ${code}`),
    now: () => T0 + 60_000
  })
  assert.ok(!(r.out + r.err).includes(SECRET), 'the API key is never printed')
  return r
}

/**
 * Three reports in `store`, in this order: `r-parked` (uid a, refused with
 * 400 and parked), `r-failing` (uid b, one 503) and `r-fresh` (uid c).
 */
async function seed (store: UsageStore): Promise<void> {
  const bytes = { a: 5_000_000, b: 3_000_000, c: 2_000_000 }
  await store.flush(Object.entries(bytes).map(([uid, b]) => ({ uid, bytes: b, requests: 1, fileTypes: { ts: b }, ips: [], sessions: [], firstSeen: T0, lastSeen: T0 })))
  await store.seal({
    now: T0,
    intervalMs: 300_000,
    force: true,
    render: (records) => records.map((r) => ({ reportId: { a: 'r-parked', b: 'r-failing', c: 'r-fresh' }[r.uid] ?? r.uid, body: `{"uid":"${r.uid}"}`, uids: 1, bytes: r.bytes }))
  })
  await store.outboxPark('r-parked', 'report endpoint answered HTTP 400', T0 + 1000, { status: 400 })
  await store.outboxFail('r-failing', 'report endpoint answered HTTP 503', T0 + 2000, { status: 503 })
}

/** A sqlite store file with {@link seed}'s reports; returns its STORE_URL. */
async function sqliteStore (dir: string): Promise<string> {
  const path = join(dir, 'data', 'streammeter.db')
  const store = new SqliteStore(path, POLICY)
  await seed(store)
  await store.close()
  return `sqlite:${path}`
}

async function outboxOf (url: string): Promise<Array<[string, boolean]>> {
  const store = new SqliteStore(url.slice('sqlite:'.length), POLICY)
  try {
    return (await store.outbox()).map((e) => [e.reportId, e.parkedAt !== undefined])
  } finally {
    await store.close()
  }
}

describe('streammeter outbox', () => {
  it('list: a table of pending then parked reports, and the totals', async () => {
    const dir = tempDir()
    const url = await sqliteStore(dir)
    const r = await cli(['list'], { STORE_URL: url }, dir)
    assert.equal(r.code, 0, r.err)
    const lines = r.out.trimEnd().split('\n')
    assert.match(lines[0] ?? '', /^REPORT ID\s+SEQ\s+CREATED \(UTC\)\s+UIDS\s+BYTES\s+BODY\s+ATTEMPTS\s+STATE\s+LAST ERROR$/)
    assert.match(lines[1] ?? '', /^r-failing\s+\d+\s+2026-11-26 09:05:00\s+1\s+3000000\s+11\s+1\s+pending\s+503: report endpoint answered HTTP 503$/)
    assert.match(lines[2] ?? '', /^r-fresh\s+\d+\s+2026-11-26 09:05:00\s+1\s+2000000\s+11\s+0\s+pending\s+-$/)
    assert.match(lines[3] ?? '', /^r-parked\s+\d+\s+2026-11-26 09:05:00\s+1\s+5000000\s+11\s+1 \(1 refused\)\s+parked\s+400: report endpoint answered HTTP 400$/)
    assert.equal(lines[4], '2 pending (5000000 bytes of usage), 1 parked (5000000 bytes of usage)')
  })

  it('list --json: the document of GET /api/outbox', async () => {
    const dir = tempDir()
    const url = await sqliteStore(dir)
    const r = await cli(['list', '--json'], { STORE_URL: url }, dir)
    assert.equal(r.code, 0, r.err)
    const doc = JSON.parse(r.out)
    assert.deepEqual(doc.stats, { pending: 2, pending_bytes: 5_000_000, parked: 1, parked_bytes: 5_000_000, oldest_age_seconds: 60 })
    assert.deepEqual(doc.pending.map((e: { report_id: string }) => e.report_id), ['r-failing', 'r-fresh'])
    assert.deepEqual(doc.parked[0], {
      report_id: 'r-parked',
      seq: doc.parked[0].seq,
      state: 'parked',
      created_at: T0 / 1000,
      uids: 1,
      bytes: 5_000_000,
      body_bytes: 11,
      attempts: 1,
      rejections: 1,
      last_status: 400,
      last_error: 'report endpoint answered HTTP 400',
      last_attempt_at: T0 / 1000 + 1,
      parked_at: T0 / 1000 + 1
    })
  })

  it('retry: puts a parked report back at the head; a pending or unknown id exits 2', async () => {
    const dir = tempDir()
    const url = await sqliteStore(dir)
    const env = { STORE_URL: url }
    assert.deepEqual(await cli(['retry', 'r-failing'], env, dir), { code: 2, out: '', err: 'streammeter outbox: report r-failing is not parked: it is waiting for delivery\n' })
    assert.deepEqual(await cli(['retry', 'nope'], env, dir), { code: 2, out: '', err: 'streammeter outbox: no report nope in the outbox\n' })
    assert.deepEqual(await cli(['retry', 'r-parked'], env, dir), { code: 0, out: 'put back at the head of delivery: r-parked\n', err: '' })
    assert.deepEqual(await outboxOf(url), [['r-parked', false], ['r-failing', false], ['r-fresh', false]])
    assert.deepEqual(await cli(['retry', '--all'], env, dir), { code: 0, out: 'no parked reports\n', err: '' })
  })

  it('drop: deletes a parked report for good and counts it; a pending one only with --force', async () => {
    const dir = tempDir()
    const url = await sqliteStore(dir)
    const env = { STORE_URL: url }
    assert.deepEqual(await cli(['drop', 'r-fresh'], env, dir), {
      code: 2, out: '', err: 'streammeter outbox drop: report r-fresh is not parked: it is waiting for delivery (--force drops it anyway)\n'
    })
    assert.deepEqual(await cli(['drop', 'r-parked'], env, dir), {
      code: 0, out: 'dropped parked report r-parked for good: 1 uids, 5000000 bytes of usage will not be billed\n', err: ''
    })
    assert.deepEqual(await cli(['drop', 'r-parked'], env, dir), { code: 2, out: '', err: 'streammeter outbox: no report r-parked in the outbox\n' })
    assert.equal((await cli(['drop', '--force', 'r-fresh'], env, dir)).code, 0)
    assert.deepEqual(await outboxOf(url), [['r-failing', false]])
    const store = new SqliteStore(url.slice('sqlite:'.length), POLICY)
    const c = await store.counters()
    await store.close()
    assert.deepEqual([c.reports_dropped, c.reports_dropped_bytes], [2, 7_000_000])
  })

  it('reads STORE_URL from a flag or .env like serve; refuses a store it cannot have', async () => {
    const dir = tempDir()
    const url = await sqliteStore(dir)
    assert.equal((await cli(['list', '--store-url', url], {}, dir)).code, 0)
    assert.equal((await cli(['list', `--store-url=${url}`], {}, dir)).code, 0)
    writeFileSync(join(dir, '.env'), `STORE_URL=${url}\n`)
    assert.match((await cli(['list'], {}, dir)).out, /r-parked/)
    const elsewhere = tempDir()
    const missing = await cli(['list'], { STORE_URL: 'sqlite:./nothing-here.db' }, elsewhere)
    assert.equal(missing.code, 2)
    assert.match(missing.err, /^streammeter outbox: STORE_URL: no sqlite store at .*nothing-here\.db/)
    const memory = await cli(['list'], { STORE_URL: 'memory:' }, elsewhere)
    assert.equal(memory.code, 2)
    assert.match(memory.err, /STORE_URL: memory: keeps the outbox inside the server's process/)
  })

  it('bad usage exits 2 with a message; --help and help outbox exit 0', async () => {
    const dir = tempDir()
    const url = await sqliteStore(dir)
    const cases: Array<[string[], RegExp]> = [
      [[], /action: missing; use list, retry or drop/],
      [['frob'], /action: unknown: "frob"; use list, retry or drop/],
      [['retry'], /retry: needs a report id or --all \(not both\)/],
      [['retry', 'r-parked', '--all'], /retry: needs a report id or --all \(not both\)/],
      [['drop'], /drop: needs a report id/],
      [['drop', 'a', 'b'], /drop: unexpected argument "b"/],
      [['list', 'extra'], /list: unexpected argument "extra"/],
      [['list', '--all'], /--all: is a flag of streammeter outbox retry/],
      [['list', '--json=yes'], /--json: takes no value/],
      [['list', '--no-such-flag'], /--no-such-flag: unknown flag/],
      [['list', '--traffic-report-max-bytes', '12'], /TRAFFIC_REPORT_MAX_BYTES: must be an integer from 1024/]
    ]
    for (const [argv, message] of cases) {
      const r = await cli(argv, { STORE_URL: url }, dir)
      assert.equal(r.code, 2, argv.join(' '))
      assert.match(r.err, message, argv.join(' '))
      assert.doesNotMatch(r.err, /\n\s+at /, 'no stack')
    }
    const help = await cli(['--help'], {}, dir)
    assert.equal(help.code, 0)
    assert.match(help.out, /^Usage: streammeter outbox <list \| retry \| drop>/)
    const viaHelp = await main(['help', 'outbox'], {}, { stdout: { write: (s: string) => assert.equal(s, help.out) }, stderr: { write: () => {} } })
    assert.equal(viaHelp, 0)
    let top = ''
    await main(['--help'], {}, { stdout: { write: (s: string) => { top += s } } })
    assert.match(top, /outbox\s+list the undelivered reports/)
  })

  it('works on a redis store under its STORE_PREFIX; an unreachable redis exits 1 without the URL', async (t: TestContext) => {
    if (!await redisOrSkip(t)) return
    const prefix = uniquePrefix('cli-outbox')
    cleanupPrefix(t, prefix)
    const store = await RedisStore.open(REDIS_URL, POLICY, { prefix })
    await seed(store)
    await store.close()
    const dir = tempDir()
    const env = { STORE_URL: REDIS_URL, STORE_PREFIX: prefix }
    assert.match((await cli(['list'], env, dir)).out, /^r-parked .* parked /m)
    assert.deepEqual(await cli(['retry', '--all'], env, dir), { code: 0, out: 'put back at the head of delivery: r-parked\n', err: '' })
    const again = await RedisStore.open(REDIS_URL, POLICY, { prefix })
    t.after(() => again.close())
    assert.deepEqual((await again.outbox()).map((e) => e.reportId), ['r-parked', 'r-failing', 'r-fresh'])

    const down = await cli(['list'], { STORE_URL: 'redis://:hunter2@127.0.0.1:1/0' }, dir)
    assert.equal(down.code, 1)
    assert.match(down.err, /^streammeter outbox: cannot connect to the redis store/)
    assert.doesNotMatch(down.err, /hunter2/)
  })
})
