import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { cpSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { request } from 'undici'
import { BadSignatureError, NotFoundError, TooManyTransfersError, UrlExpiredError, errorBody } from '../../src/errors.ts'
import { checkSignedRequest, signToken, signedQuery } from '../../src/server/access/url-signer.ts'
import { parseLogLine } from '../../src/server/nginx/access-log-line.ts'
import { runFfmpeg, startCountingRelay } from '../helpers/counting-relay.ts'
import { ENGINES, nginxMasters, nginxProcesses, startEngineServer } from '../helpers/engine-server.ts'
import type { Cleanup, Engine, EngineServer } from '../helpers/engine-server.ts'
import { nginxOrSkip } from '../helpers/own-nginx.ts'
import { Receiver } from '../helpers/receiver.ts'
import { REDIS_URL, cleanupPrefix, redisOrSkip, uniquePrefix } from '../helpers/redis.ts'
import { stopGracefully, trafficOf } from '../helpers/serve-fleet.ts'
import { startStaticOrigin } from '../helpers/static-origin.ts'
import { waitFor } from '../helpers/wait.ts'

// The same behaviours, through the real `streammeter serve` process, under
// ENGINE=node and ENGINE=nginx (docs/engines.md). Each check below holds for
// both engines unless a comment says how and why the engines differ.

const SECRET = 'engines-suite-secret'
const MiB = 1024 * 1024
const JSON_TYPE = 'application/json; charset=utf-8'
const FILES = { 'seg.ts': 100_000, 'clip.mp4': 300_000, 'movie.mp4': 16 * MiB, 'big.mp4': 48 * MiB } as const
type File = keyof typeof FILES

// One media root for the file: the bundled demo stream (for ffmpeg) and
// files of known sizes whose bytes differ by position (a range is checkable).
const root = mkdtempSync(join(tmpdir(), 'sm-engines-'))
cpSync(new URL('../../examples/media', import.meta.url).pathname, root, { recursive: true })
const content = new Map<File, Buffer>()
for (const [name, size] of Object.entries(FILES) as Array<[File, number]>) {
  const bytes = Buffer.alloc(size)
  for (let i = 0; i < size; i += 4096) bytes[i] = (i / 4096) % 251
  for (let i = 0; i < Math.min(size, 300_000); i++) bytes[i] = i % 251
  content.set(name, bytes)
  writeFileSync(join(root, name), bytes)
  // Last modified well before any request's date, as media files are.
  utimesSync(join(root, name), new Date('2024-01-01T00:00:00Z'), new Date('2024-01-01T00:00:00Z'))
}
after(() => rmSync(root, { recursive: true, force: true }))

const LATER = Math.floor(Date.now() / 1000) + 3600
/** A signed path+query for `uid`. */
const signed = (uid: string, path: string): string => `/${path}?${signedQuery({ secret: SECRET, uid, path, expires: LATER })}`

/** The settings every server here runs with: every byte reported (no threshold), 1 s windows. */
function settings (receiver: Receiver, store: string): Record<string, string> {
  return {
    ORIGIN_ROOT: root,
    SIGNING_SECRET: SECRET,
    STORE_URL: store,
    TRAFFIC_REPORT_URL: receiver.url,
    TRAFFIC_MIN_BYTES: '0',
    TRAFFIC_REPORT_INTERVAL: '1',
    TRAFFIC_FLUSH_INTERVAL: '0.2',
    SHUTDOWN_GRACE: '10',
    // Every client here is 127.0.0.1: the default of 64 concurrent media
    // requests per IP would refuse the many-clients test with 429s.
    MAX_TRANSFERS_PER_IP: '256'
  }
}

/** A temp dir removed after the test. */
function tempDir (t: Cleanup): string {
  const dir = mkdtempSync(join(tmpdir(), 'sm-engines-run-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

async function newReceiver (t: Cleanup): Promise<Receiver> {
  const receiver = await Receiver.start()
  t.after(() => receiver.close())
  return receiver
}

interface Got { status: number, headers: Record<string, string | string[] | undefined>, body: Buffer }

/** One request on a connection of its own (a stop need not wait for idle keep-alive clients). */
async function get (server: EngineServer, path: string, headers: Record<string, string> = {}, method: 'GET' | 'HEAD' = 'GET'): Promise<Got> {
  const res = await request(`${server.url}${path}`, { method, headers, reset: true })
  return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) }
}

/** What each uid's clients received, body bytes. */
class Ledger extends Map<string, number> {
  add (uid: string, bytes: number): void {
    this.set(uid, (this.get(uid) ?? 0) + bytes)
  }

  /** Download `file` whole for `uid` and count it. */
  async fetch (server: EngineServer, uid: string, file: File): Promise<void> {
    const got = await get(server, signed(uid, file))
    assert.equal(got.status, 200, `${uid} ${file}`)
    assert.equal(got.body.length, FILES[file])
    this.add(uid, got.body.length)
  }
}

/** The entries of `m` for `uids`, as an object (0 or absent: left out). */
function pick (m: ReadonlyMap<string, number>, uids: Iterable<string>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const uid of uids) if ((m.get(uid) ?? 0) > 0) out[uid] = m.get(uid)!
  return out
}

/**
 * Wait until the receiver's reports hold at least `expected` for each uid,
 * then require exactly `expected` for them.
 */
async function reportedExactly (receiver: Receiver, expected: Record<string, number>, timeoutMs = 10_000): Promise<void> {
  const uids = Object.keys(expected)
  await waitFor(() => uids.every((uid) => (receiver.totals().get(uid) ?? 0) >= expected[uid]!), timeoutMs, 'the reports')
    .catch((err: Error) => { throw new Error(`${err.message}: reported ${JSON.stringify(pick(receiver.totals(), uids))}, expected ${JSON.stringify(expected)}`) })
  assert.deepEqual(pick(receiver.totals(), uids), expected)
}

/** Requests the deduplicated reports count for `uid`. */
function requestsOf (receiver: Receiver, uid: string): number {
  let n = 0
  for (const r of receiver.reports) for (const d of r.traffic_details as Array<{ uid: string, request_count: number }>) if (d.uid === uid) n += d.request_count
  return n
}

/** Every report id was always sent with the same body. */
function assertStableBodies (receiver: Receiver): void {
  const bodies = new Map<string, string>()
  for (const r of receiver.requests) {
    const key = String(r.headers['idempotency-key'])
    assert.equal(r.body, bodies.get(key) ?? r.body, `report ${key} sent with two bodies`)
    bodies.set(key, r.body)
  }
}

/** SIGTERM, exit 0, and with the nginx engine no nginx process left of its directory. */
async function stopCleanly (server: EngineServer): Promise<void> {
  assert.equal(await stopGracefully(server, 20_000), 0, server.output())
  assert.deepEqual(nginxProcesses(server.engineDir, server.nginxGroups), [], 'nginx processes left')
}

/**
 * A download of `file` that takes its first chunk, then waits for `go` before
 * reading the rest at full speed: a response still in flight until then.
 */
function heldDownload (server: EngineServer, uid: string, file: File, go: Promise<void>, headers: Record<string, string> = {}): { started: Promise<void>, done: Promise<number> } {
  let started!: () => void
  const first = new Promise<void>((resolve) => { started = resolve })
  const done = (async () => {
    const res = await request(`${server.url}${signed(uid, file)}`, { reset: true, headers })
    assert.equal(res.statusCode, 200)
    let got = 0
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      if (got === 0) {
        started()
        await go
      }
      got += chunk.length
    }
    return got
  })()
  done.catch(() => started())
  return { started: first, done }
}

/**
 * Whether the server is still sending a response to each of `uids`: the node
 * engine lists its live transfers in /active-transfers; the nginx engine's
 * streammeter cannot see them (docs/engines.md), but nginx writes a
 * response's log line only when it has finished it.
 */
async function stillSending (server: EngineServer, uids: readonly string[]): Promise<boolean> {
  if (server.engine === 'nginx') {
    const logged = new Set(readFileSync(join(server.engineDir, 'access.log'), 'utf8').split('\n').map((l) => parseLogLine(l)?.uid))
    return uids.every((uid) => !logged.has(uid))
  }
  const res = await request(`${server.url}/active-transfers`, { reset: true })
  const { transfers } = await res.body.json() as { transfers: Array<{ uid: string }> }
  return uids.every((uid) => transfers.some((x) => x.uid === uid))
}

/** Whether the server has recorded `bytes` in all and flushed every one of them to the store (/traffic). */
async function flushed (server: EngineServer, bytes: number): Promise<boolean> {
  const status = await trafficOf(server)
  return status.statistics.bytes_recorded === bytes && status.current_traffic_summary.unflushed_bytes === 0
}

/** A promise and the function that resolves it. */
function gate (): { go: Promise<void>, open: () => void } {
  let open!: () => void
  const go = new Promise<void>((resolve) => { open = resolve })
  return { go, open }
}

/** Skip the test when the engine cannot run here (nginx missing; a failure with CI=true). */
function engineOrSkip (t: TestContext, engine: Engine): boolean {
  return engine === 'node' || nginxOrSkip(t)
}

describe('both engines through `streammeter serve`', { concurrency: true }, () => {
  for (const engine of ENGINES) {
    describe(`ENGINE=${engine}`, { concurrency: 1 }, () => {
      describe('one server: signed URLs, ranges, playlists, many clients, aborts, stop', { concurrency: 1 }, () => {
        // Started by the first test that runs (the nginx engine's may be skipped).
        const cleanups: Array<() => unknown> = []
        after(async () => { for (const fn of cleanups) await fn() })
        const suite: Cleanup = { after: (fn) => { cleanups.push(fn) } }
        const ledger = new Ledger()
        let shared: Promise<{ server: EngineServer, receiver: Receiver }> | undefined
        const start = async (t: TestContext): Promise<{ server: EngineServer, receiver: Receiver } | undefined> => {
          if (!engineOrSkip(t, engine)) return undefined
          shared ??= (async () => {
            const receiver = await newReceiver(suite)
            const server = await startEngineServer(suite, engine, settings(receiver, `sqlite:${join(tempDir(suite), 'meter.db')}`))
            return { server, receiver }
          })()
          return await shared
        }

        it('signed URLs: valid 200, bad token 403, expired 410, missing 404, the same JSON errors; only the 200 is metered', async (t) => {
          const s = await start(t)
          if (s === undefined) return
          const past = Math.floor(Date.now() / 1000) - 60
          const bad = errorBody(new BadSignatureError())
          // Playlists too: nginx checks them before it passes them to streammeter.
          const refusals = [
            [signed('sig', 'seg.ts').replace(/token=[0-9a-f]/, 'token=z'), 403, bad],
            [signed('sig', 'master.m3u8').replace(/token=[0-9a-f]/, 'token=z'), 403, bad],
            [`/seg.ts?uid=sig&expires=${LATER}`, 403, bad],
            [`/seg.ts?uid=sig&expires=${past}&token=${signToken(SECRET, 'sig', 'seg.ts', past)}`, 410, errorBody(new UrlExpiredError())],
            [signed('sig', 'none.ts'), 404, errorBody(new NotFoundError())]
          ] as const
          for (const [path, status, body] of refusals) {
            const got = await get(s.server, path)
            assert.equal(got.status, status, path)
            assert.equal(got.headers['content-type'], JSON_TYPE, path)
            assert.deepEqual(JSON.parse(got.body.toString()), body, path)
          }
          const ok = await get(s.server, signed('sig', 'seg.ts'))
          assert.equal(ok.status, 200)
          assert.equal(ok.headers['content-type'], 'video/mp2t')
          // Private (docs/access.md#requests): a shared cache must not serve it to others unmetered.
          assert.equal(ok.headers['cache-control'], 'private, max-age=86400')
          assert.ok(ok.body.equals(content.get('seg.ts')!))
          ledger.add('sig', ok.body.length)
          // The refused requests came first: had they been metered, they would be in these reports.
          await reportedExactly(s.receiver, { sig: 100_000 })
          assert.equal(requestsOf(s.receiver, 'sig'), 1)
        })

        it('a range is a 206 of the exact bytes, metered its length; several ranges a 200; HEAD and 304s are metered 0', async (t) => {
          const s = await start(t)
          if (s === undefined) return
          const head = await get(s.server, signed('ranges', 'clip.mp4'), {}, 'HEAD')
          assert.equal(head.status, 200)
          assert.equal(head.headers['content-length'], '300000')
          assert.equal(head.headers['accept-ranges'], 'bytes')
          assert.equal(head.body.length, 0)
          // Conditional requests answered 304: the validator a cache kept,
          // and a date after the last modification (a cache that kept the
          // response's Date; RFC 9110 §13.1.3: not modified since then).
          const conditions: Array<Record<string, string>> = [
            { 'if-none-match': String(head.headers.etag) },
            { 'if-modified-since': String(head.headers['last-modified']) },
            { 'if-modified-since': String(head.headers.date) }
          ]
          for (const condition of conditions) {
            const notModified = await get(s.server, signed('ranges', 'clip.mp4'), condition)
            assert.equal(notModified.status, 304, JSON.stringify(condition))
            assert.equal(notModified.body.length, 0)
          }
          const part = await get(s.server, signed('ranges', 'clip.mp4'), { range: 'bytes=1000-50999' })
          assert.equal(part.status, 206)
          assert.equal(part.headers['content-range'], 'bytes 1000-50999/300000')
          assert.equal(part.headers['cache-control'], 'private, max-age=86400')
          assert.ok(part.body.equals(content.get('clip.mp4')!.subarray(1000, 51000)))
          ledger.add('ranges', part.body.length)
          // Several ranges get the whole file, a 200 (docs/access.md#requests), metered whole.
          const several = await get(s.server, signed('ranges', 'clip.mp4'), { range: 'bytes=0-9,20-29' })
          assert.equal(several.status, 200)
          assert.ok(several.body.equals(content.get('clip.mp4')!))
          ledger.add('ranges', several.body.length)
          await reportedExactly(s.receiver, { ranges: 350_000 })
          assert.equal(requestsOf(s.receiver, 'ranges'), 2, 'HEAD and 304s count no request')
        })

        it('playlists are rewritten with signed children; ffmpeg plays to the end; reported == bytes the client got', async (t) => {
          const s = await start(t)
          if (s === undefined) return
          // The master and a variant with a key, fetched directly: every child URI is signed for its own path.
          for (const path of ['master.m3u8', 'enc/index.m3u8']) {
            const got = await get(s.server, signed('lists', path))
            assert.equal(got.status, 200)
            assert.equal(got.headers['content-type'], 'application/vnd.apple.mpegurl')
            assert.equal(got.headers['cache-control'], 'private, no-cache')
            assert.equal(Number(got.headers['content-length']), got.body.length)
            const text = got.body.toString()
            const uris = [...text.split('\n').filter((l) => l !== '' && !l.startsWith('#')), ...[...text.matchAll(/URI="([^"]+)"/g)].map((m) => m[1]!)]
            assert.ok(uris.length >= 3, text)
            for (const uri of uris) {
              const child = new URL(uri, `http://x/${path}`)
              const q = child.searchParams
              assert.equal(q.get('uid'), 'lists', uri)
              assert.equal(q.get('expires'), String(LATER), uri)
              const check = checkSignedRequest({ secret: SECRET, uid: q.get('uid') ?? undefined, path: child.pathname.slice(1), expires: q.get('expires') ?? undefined, token: q.get('token') ?? undefined, scope: q.get('scope') ?? undefined, now: Date.now() / 1000 })
              assert.equal(check, 'ok', `${uri} is not signed for its path`)
            }
            ledger.add('lists', got.body.length)
          }
          // The content key: a secret no cache may keep.
          const key = await get(s.server, signed('lists', 'enc/enc.key'))
          assert.equal(key.status, 200)
          assert.equal(key.headers['cache-control'], 'private, no-store')
          ledger.add('lists', key.body.length)
          // ffmpeg through a relay that counts what reached the client; the AES-128 variant of the master.
          const relay = await startCountingRelay(s.server.url)
          t.after(() => relay.close())
          const out = join(tempDir(t), 'out.ts')
          const r = await runFfmpeg(['-i', `${relay.url}${signed('ffmpeg', 'master.m3u8')}`, '-map', '0:p:1', '-c', 'copy', '-y', out])
          assert.equal(r.code, 0, r.stderr)
          const seconds = Number(execFileSync('ffprobe', ['-v', 'error', '-show_entries', 'format=duration', '-of', 'csv=p=0', out], { encoding: 'utf8' }))
          assert.ok(seconds > 7.5 && seconds < 8.5, `played ${seconds} s of 8`)
          const received = relay.received.get('ffmpeg') ?? 0
          assert.ok(received > 250_000, `ffmpeg received ${received} bytes`)
          ledger.add('ffmpeg', received)
          await reportedExactly(s.receiver, { lists: ledger.get('lists')!, ffmpeg: received })
        })

        it('32 clients at once, distinct uids: each uid reported to the byte, its requests counted', async (t) => {
          const s = await start(t)
          if (s === undefined) return
          const uids = Array.from({ length: 32 }, (_, i) => `many-${i}`)
          const expected: Record<string, number> = {}
          await Promise.all(uids.map(async (uid, i) => {
            const parts = await Promise.all([
              get(s.server, signed(uid, 'seg.ts')),
              get(s.server, signed(uid, 'clip.mp4')),
              get(s.server, signed(uid, 'clip.mp4'), { range: `bytes=${i}-${1000 * i + 4999}` })
            ])
            assert.deepEqual(parts.map((p) => p.status), [200, 200, 206])
            const bytes = parts.reduce((sum, p) => sum + p.body.length, 0)
            assert.equal(bytes, 100_000 + 300_000 + 1000 * i + 5000 - i)
            expected[uid] = bytes
            ledger.add(uid, bytes)
          }))
          await reportedExactly(s.receiver, expected)
          for (const uid of uids) assert.equal(requestsOf(s.receiver, uid), 3, uid)
        })

        it('a download the client cuts is metered more than 0, at least what it got, never the whole file', async (t) => {
          const s = await start(t)
          if (s === undefined) return
          const size = FILES['big.mp4']
          const res = await request(`${s.server.url}${signed('cut', 'big.mp4')}`, { reset: true })
          let received = 0
          for await (const chunk of res.body as AsyncIterable<Buffer>) {
            received += chunk.length
            if (received >= MiB) break // leaving the loop destroys the body: the client hangs up
          }
          // node: the bytes the kernel took from the server's socket, counted
          // in write callbacks and recorded as they go (a cut write is taken
          // back at the close), so possibly in two reports. nginx: one log
          // line when nginx gives the response up, `$body_bytes_sent` (what
          // sendfile handed to the kernel), so one report. Both are at least
          // what the client got and at most that plus what the socket buffers
          // hold (a few MiB on loopback), far below the 48 MiB file.
          let metered = 0
          await waitFor(async () => {
            const now = s.receiver.totals().get('cut') ?? 0
            if (now === 0 || now !== metered) {
              metered = now
              return false
            }
            // The same total over more than one window and flush: settled.
            await new Promise((resolve) => setTimeout(resolve, 1300))
            return s.receiver.totals().get('cut') === now
          }, 10_000, 'the cut download to be reported')
          t.diagnostic(`${engine}: client received ${received}, metered ${metered}`)
          assert.ok(metered >= received, `metered ${metered} < received ${received}`)
          assert.ok(metered <= received + 16 * MiB && metered < size, `metered ${metered}, received ${received}`)
          ledger.add('cut', metered)
        })

        it('a graceful stop reports nothing more: the totals equal what every client received', async (t) => {
          const s = await start(t)
          if (s === undefined) return
          await stopCleanly(s.server)
          assert.deepEqual(pick(s.receiver.totals(), s.receiver.totals().keys()), pick(ledger, ledger.keys()))
          assertStableBodies(s.receiver)
        })
      })

      it('an HTTP origin: the same bytes and ranges, the proxy\'s Cache-Control, no origin cookie; metered exactly', async (t) => {
        if (!engineOrSkip(t, engine)) return
        // An origin that would let shared caches keep its answers, sets a
        // cookie, and says no-store for one file (the only directive kept).
        const origin = await startStaticOrigin(root, (path) => ({
          'cache-control': path.endsWith('seg.ts') ? 'no-store' : 'public, max-age=600',
          'set-cookie': 'origin=1; Path=/'
        }))
        t.after(() => origin.close())
        const receiver = await newReceiver(t)
        const env: Record<string, string> = { ...settings(receiver, `sqlite:${join(tempDir(t), 'meter.db')}`), ORIGIN_URL: origin.url }
        delete env.ORIGIN_ROOT
        const server = await startEngineServer(t, engine, env)
        const whole = await get(server, signed('origin', 'clip.mp4'))
        assert.equal(whole.status, 200)
        assert.ok(whole.body.equals(content.get('clip.mp4')!))
        assert.equal(whole.headers['cache-control'], 'private, max-age=86400')
        // The origin's cookie never passes; the node engine sets its own session cookie
        // (docs/access.md#sessions), which the nginx engine does not do yet.
        assert.doesNotMatch(String(whole.headers['set-cookie'] ?? ''), /origin=/)
        if (engine === 'nginx') assert.equal(whole.headers['set-cookie'], undefined)
        const part = await get(server, signed('origin', 'clip.mp4'), { range: 'bytes=1000-50999' })
        assert.equal(part.status, 206)
        assert.equal(part.headers['content-range'], 'bytes 1000-50999/300000')
        assert.ok(part.body.equals(content.get('clip.mp4')!.subarray(1000, 51000)))
        const noStore = await get(server, signed('origin', 'seg.ts'))
        assert.equal(noStore.status, 200)
        assert.equal(noStore.headers['cache-control'], 'private, no-store')
        const head = await get(server, signed('origin', 'clip.mp4'), {}, 'HEAD')
        assert.equal(head.status, 200)
        assert.equal(head.body.length, 0)
        const missing = await get(server, signed('origin', 'none.ts'))
        assert.equal(missing.status, 404)
        assert.deepEqual(JSON.parse(missing.body.toString()), errorBody(new NotFoundError()))
        await reportedExactly(receiver, { origin: 300_000 + 50_000 + 100_000 })
        assert.equal(requestsOf(receiver, 'origin'), 3)
        await stopCleanly(server)
      })

      it('SIGTERM during downloads: they complete, everything is reported, exit 0, no nginx left', async (t) => {
        if (!engineOrSkip(t, engine)) return
        const receiver = await newReceiver(t)
        const server = await startEngineServer(t, engine, { ...settings(receiver, `sqlite:${join(tempDir(t), 'meter.db')}`), TRAFFIC_REPORT_INTERVAL: '3600' })
        const ledger = new Ledger()
        await ledger.fetch(server, 'before', 'clip.mp4')
        const { go, open } = gate()
        const held = ['term-1', 'term-2', 'term-3'].map((uid) => ({ uid, ...heldDownload(server, uid, 'movie.mp4', go) }))
        await Promise.all(held.map((h) => h.started))
        assert.ok(await stillSending(server, held.map((h) => h.uid)), 'the downloads are in flight')
        server.child.kill('SIGTERM')
        // New requests are refused (connection refused, or the node engine's
        // JSON 503 while it drains); one that slipped in first is served and metered.
        await waitFor(async () => {
          const late = await get(server, signed('late', 'seg.ts')).catch(() => undefined)
          if (late === undefined || late.status === 503) return true
          ledger.add('late', late.body.length)
          return false
        }, 5000, 'new requests to be refused')
        assert.equal(server.child.exitCode, null, 'the server waits for its downloads')
        open()
        for (const h of held) {
          assert.equal(await h.done, FILES['movie.mp4'], `${h.uid} was cut`)
          ledger.add(h.uid, FILES['movie.mp4'])
        }
        assert.equal(await server.exited, 0, server.output())
        assert.deepEqual(nginxProcesses(server.engineDir, server.nginxGroups), [], 'nginx processes left')
        assert.deepEqual(pick(receiver.totals(), receiver.totals().keys()), pick(ledger, ledger.keys()))
        assert.equal(receiver.reports.length, 1, 'one final report')
      })

      it('MAX_TRANSFERS_PER_IP: past it a JSON 429 for the client behind a trusted proxy; others served; counted in /metrics', async (t) => {
        if (!engineOrSkip(t, engine)) return
        const receiver = await newReceiver(t)
        const server = await startEngineServer(t, engine, {
          ...settings(receiver, 'memory:'), MAX_TRANSFERS_PER_IP: '3', TRUSTED_PROXIES: '127.0.0.1', ADMIN_TOKEN: 'per-ip-admin'
        })
        const client = { 'x-forwarded-for': '198.51.100.7' }
        const { go, open } = gate()
        t.after(open)
        const held = [1, 2, 3].map((i) => heldDownload(server, `held-${i}`, 'big.mp4', go, client))
        await Promise.all(held.map((h) => h.started))
        const over = await get(server, signed('over', 'seg.ts'), client)
        assert.equal(over.status, 429)
        assert.equal(over.headers['content-type'], JSON_TYPE)
        assert.deepEqual(JSON.parse(over.body.toString()), errorBody(new TooManyTransfersError(3)))
        // A forged entry to the left of the client changes nothing; another client is served.
        assert.equal((await get(server, signed('over', 'seg.ts'), { 'x-forwarded-for': '203.0.113.9, 198.51.100.7' })).status, 429)
        assert.equal((await get(server, signed('other', 'seg.ts'), { 'x-forwarded-for': '198.51.100.8' })).status, 200)
        open()
        for (const h of held) assert.equal(await h.done, FILES['big.mp4'])
        assert.equal((await get(server, signed('again', 'seg.ts'), client)).status, 200)
        // The nginx engine counts them once streammeter has read nginx's log lines.
        let metrics = ''
        await waitFor(async () => {
          metrics = (await get(server, '/metrics', { authorization: 'Bearer per-ip-admin' })).body.toString()
          return /^streammeter_limit_hits_total\{limit="max_transfers_per_ip"\} 2$/m.test(metrics)
        }, 5000, 'two refusals in /metrics')
        assert.match(metrics, /^streammeter_requests_total\{method="GET",status="429",file_type="ts"\} 2$/m)
      })

      it('ACCESS_ALLOW_CIDRS: its clients pass without a token under their uid parameter, playlists unsigned; others refused; file checks', async (t) => {
        if (!engineOrSkip(t, engine)) return
        const receiver = await newReceiver(t)
        const server = await startEngineServer(t, engine, {
          ...settings(receiver, 'memory:'), TRUSTED_PROXIES: '127.0.0.1', ACCESS_ALLOW_CIDRS: '198.51.100.0/24', ACCESS_API_KEY: 'engines-api-key', ACCESS_OPEN_EXTENSIONS: '.mp4'
        })
        const cdn = { 'x-forwarded-for': '198.51.100.7' }
        const outside = { 'x-forwarded-for': '203.0.113.9' }
        const plain = await get(server, '/seg.ts?uid=cdn-1', cdn)
        assert.equal(plain.status, 200)
        assert.ok(plain.body.equals(content.get('seg.ts')!))
        // A bad token from there is not looked at; no uid: served, not metered.
        assert.equal((await get(server, '/seg.ts?uid=cdn-1&expires=1&token=bad', cdn)).status, 200)
        assert.equal((await get(server, '/seg.ts', cdn)).status, 200)
        const playlist = await get(server, '/master.m3u8?uid=cdn-1', cdn)
        assert.equal(playlist.status, 200)
        assert.doesNotMatch(playlist.body.toString(), /token=/)
        // Elsewhere the signed-URL rules hold, X-Forwarded-For without a trusted peer included.
        assert.equal((await get(server, '/seg.ts?uid=cdn-1', outside)).status, 403)
        assert.equal((await get(server, '/seg.ts?uid=cdn-1', { 'x-forwarded-for': '198.51.100.7, 203.0.113.9' })).status, 403)
        assert.equal((await get(server, signed('signed-1', 'seg.ts'), outside)).status, 200)
        // An open extension: served to anyone, metered to nobody (the uid parameter is not believed).
        assert.equal((await get(server, '/clip.mp4?uid=claimed', outside)).status, 200)
        await reportedExactly(receiver, { 'cdn-1': 2 * FILES['seg.ts'] + playlist.body.length, 'signed-1': FILES['seg.ts'] })
        // The access API is streammeter's own path: the nginx engine passes it on.
        const checked = await request(`${server.url}/api/file/check`, {
          method: 'POST', headers: { authorization: 'engines-api-key', 'content-type': 'application/json' }, body: JSON.stringify({ path: '/seg.ts' })
        })
        assert.deepEqual(await checked.body.json(), { path: '/seg.ts', exists: true, size: FILES['seg.ts'] })
      })

      it('an IP-bound signed playlist: its children are bound to the same client block; from elsewhere 403', async (t) => {
        if (!engineOrSkip(t, engine)) return
        const receiver = await newReceiver(t)
        const server = await startEngineServer(t, engine, { ...settings(receiver, 'memory:'), TRUSTED_PROXIES: '127.0.0.1' })
        const client = { 'x-forwarded-for': '198.51.100.7' }
        const master = `/master.m3u8?${signedQuery({ secret: SECRET, uid: 'ip-user', path: 'master.m3u8', expires: LATER, ip: '198.51.100.0/24' })}`
        assert.equal((await get(server, master, { 'x-forwarded-for': '203.0.113.9' })).status, 403)
        const playlist = await get(server, master, client)
        assert.equal(playlist.status, 200)
        const children = playlist.body.toString().split('\n').filter((l) => l !== '' && !l.startsWith('#'))
        assert.ok(children.length > 0)
        for (const child of children) {
          assert.match(child, /[?&]ip=198\.51\.100\.0\/24&/, child)
          const variant = await get(server, `/${child}`, client)
          assert.equal(variant.status, 200, child)
          assert.equal((await get(server, `/${child}`, { 'x-forwarded-for': '198.51.101.7' })).status, 403, child)
          // A level down, the segments (plain tokens' place) are bound too.
          const segment = variant.body.toString().split('\n').find((l) => /\.(ts|m4s)\?/.test(l))
          assert.ok(segment !== undefined, child)
          assert.match(segment, /[?&]ip=198\.51\.100\.0\/24&/)
          const childPath = child.split('?')[0] as string
          const base = childPath.slice(0, childPath.lastIndexOf('/') + 1)
          assert.equal((await get(server, `/${base}${segment}`, client)).status, 200, segment)
          assert.equal((await get(server, `/${base}${segment}`, { 'x-forwarded-for': '198.51.101.7' })).status, 403, segment)
        }
      })

      it('grants and sessions: plain URLs let in, metered to the grant\'s uid; replays refused; revoked at once', async (t) => {
        if (!engineOrSkip(t, engine)) return
        const receiver = await newReceiver(t)
        const server = await startEngineServer(t, engine, { ...settings(receiver, 'memory:'), TRUSTED_PROXIES: '127.0.0.1', ACCESS_API_KEY: 'engines-api-key' })
        const player = { 'user-agent': 'Player/3.0', 'x-forwarded-for': '203.0.113.50' }
        const api = { authorization: 'Bearer engines-api-key', 'content-type': 'application/json' }
        const granted = await request(`${server.url}/api/whitelist`, {
          method: 'POST', headers: api, body: JSON.stringify({ uid: 'g-user', path: '/enc/index.m3u8', clientIp: '203.0.113.7', UserAgent: 'Player/3.0' })
        })
        assert.equal(granted.statusCode, 200, await granted.body.text())
        // The grant lets in plain URLs of its directory from its network with its agent, and opens a session.
        const first = await get(server, '/enc/seg000.ts', player)
        assert.equal(first.status, 200)
        const id = /session_id_fileserver=([A-Za-z0-9_-]{32})/.exec(String(first.headers['set-cookie']))?.[1] ?? ''
        assert.notEqual(id, '')
        const withCookie = { ...player, cookie: `session_id_fileserver=${id}` }
        const playlist = await get(server, '/enc/index.m3u8', withCookie)
        assert.equal(playlist.status, 200)
        const key = await get(server, '/enc/enc.key', { ...player, 'x-session-id': id })
        assert.equal(key.status, 200)
        assert.equal(key.headers['x-streammeter-uid'], undefined, 'the uid header is the log\'s only')
        // Replays: another network, another agent, another uid, another directory.
        assert.equal((await get(server, '/enc/seg001.ts', { ...withCookie, 'x-forwarded-for': '198.51.100.7' })).status, 403)
        assert.equal((await get(server, '/enc/seg001.ts', { ...withCookie, 'user-agent': 'curl/8' })).status, 403)
        assert.equal((await get(server, '/enc/seg001.ts?uid=mallory', withCookie)).status, 403)
        assert.equal((await get(server, '/seg.ts', withCookie)).status, 403)
        // A signed URL still comes first, and bills its own uid.
        assert.equal((await get(server, signed('signed-user', 'seg.ts'), withCookie)).status, 200)
        await reportedExactly(receiver, {
          'g-user': first.body.length + playlist.body.length + key.body.length,
          'signed-user': FILES['seg.ts']
        })
        assert.equal(receiver.totals().get('mallory'), undefined)
        const revoked = await request(`${server.url}/api/whitelist?uid=g-user`, { method: 'DELETE', headers: { authorization: api.authorization } })
        assert.equal(revoked.statusCode, 200, await revoked.body.text())
        assert.equal((await get(server, '/enc/seg002.ts', withCookie)).status, 403)
        assert.equal((await get(server, '/enc/seg002.ts', player)).status, 403)
      })

      it('use limits: a signed key URL answers KEY_MAX_USES GETs, then 403; counted in the store', async (t) => {
        if (!engineOrSkip(t, engine)) return
        const receiver = await newReceiver(t)
        const server = await startEngineServer(t, engine, { ...settings(receiver, 'memory:'), KEY_MAX_USES: '2', PLAYLIST_MAX_USES: '1' })
        const key = signed('key-user', 'enc/enc.key')
        assert.equal((await get(server, key, {}, 'HEAD')).status, 200, 'a HEAD is not counted')
        assert.equal((await get(server, key)).status, 200)
        assert.equal((await get(server, key)).status, 200)
        const third = await get(server, key)
        assert.equal(third.status, 403)
        assert.equal(JSON.parse(third.body.toString()).error.code, 'SM_ERR_USE_LIMIT')
        assert.equal((await get(server, signed('other-user', 'enc/enc.key'))).status, 200, 'another URL counts apart')
        const master = signed('key-user', 'master.m3u8')
        assert.equal((await get(server, master)).status, 200)
        assert.equal((await get(server, master)).status, 403)
        assert.equal((await get(server, signed('key-user', 'seg.ts'))).status, 200, 'segments are not limited')
      })

      it('denials: counted by reason in /metrics and listed, without tokens, in /api/access-log/denied', async (t) => {
        if (!engineOrSkip(t, engine)) return
        const receiver = await newReceiver(t)
        const server = await startEngineServer(t, engine, { ...settings(receiver, 'memory:'), TRUSTED_PROXIES: '127.0.0.1', ADMIN_TOKEN: 'denials-admin' })
        const past = Math.floor(Date.now() / 1000) - 60
        const bound = `/seg.ts?${signedQuery({ secret: SECRET, uid: 'ip-user', path: 'seg.ts', expires: LATER, ip: '198.51.100.0/24' })}`
        const refused: Array<[string, number, string]> = [
          [signed('d1', 'seg.ts').replace(/token=[0-9a-f]/, 'token=z'), 403, 'bad_signature'],
          ['/seg.ts?uid=d2', 403, 'bad_signature'],
          [bound, 403, 'ip_mismatch'],
          [`/seg.ts?uid=d3&expires=${past}&token=${signToken(SECRET, 'd3', 'seg.ts', past)}`, 410, 'expired'],
          [`/seg.ts?uid=${'x'.repeat(300)}`, 400, 'uid_too_long']
        ]
        for (const [path, status] of refused) assert.equal((await get(server, path, { 'x-forwarded-for': '203.0.113.9' })).status, status, path)
        // Not denials: a bad path, a missing file, a refused method, an allowed request.
        assert.equal((await get(server, '/a//b.ts?uid=d4', { 'x-forwarded-for': '203.0.113.9' })).status, 400)
        assert.equal((await get(server, signed('d5', 'none.ts'))).status, 404)
        assert.equal((await get(server, bound, { 'x-forwarded-for': '198.51.100.7' })).status, 200)
        const admin = { authorization: 'Bearer denials-admin' }
        // The nginx engine learns of them from its log, at the next flush.
        let listed: { counts: Record<string, number>, denied: Array<Record<string, unknown>> } = { counts: {}, denied: [] }
        await waitFor(async () => {
          listed = JSON.parse((await get(server, '/api/access-log/denied', admin)).body.toString())
          return listed.denied.length >= refused.length
        }, 5000, 'every denial listed')
        assert.deepEqual(listed.counts, { bad_signature: 2, ip_mismatch: 1, expired: 1, uid_too_long: 1, uid_mismatch: 0, store_unavailable: 0, use_limit: 0 })
        assert.deepEqual(listed.denied.map((d) => [d.reason, d.status, d.path, d.ip]).reverse(),
          refused.map(([, status, reason]) => [reason, status, '/seg.ts', '203.0.113.9']))
        const text = JSON.stringify(listed)
        assert.doesNotMatch(text, /token|uid=|expires/)
        const metrics = (await get(server, '/metrics', admin)).body.toString()
        assert.match(metrics, /^streammeter_access_denials_total\{reason="bad_signature"\} 2$/m)
        assert.match(metrics, /^streammeter_access_denials_total\{reason="ip_mismatch"\} 1$/m)
        assert.match(metrics, /^streammeter_access_denials_total\{reason="expired"\} 1$/m)
        assert.match(metrics, /^streammeter_access_denials_total\{reason="uid_too_long"\} 1$/m)
        assert.equal((await get(server, '/api/access-log/denied')).status, 401)
        assert.equal((await get(server, '/api/access-log/denied?limit=x', admin)).status, 400)
        assert.equal(JSON.parse((await get(server, '/api/access-log/denied?limit=2', admin)).body.toString()).denied.length, 2)
      })

      it('kill -9 and a restart on the same store and ENGINE_DIR: nothing lost, nothing doubled', async (t) => {
        if (!engineOrSkip(t, engine)) return
        const receiver = await newReceiver(t)
        const env = settings(receiver, `sqlite:${join(tempDir(t), 'meter.db')}`)
        const first = await startEngineServer(t, engine, env)
        const ledger = new Ledger()
        await Promise.all([ledger.fetch(first, 'crash-a', 'clip.mp4'), ledger.fetch(first, 'crash-b', 'seg.ts')])
        // Flushed: the store has it (and some of it may be reported already).
        await waitFor(() => flushed(first, 400_000), 5000, 'the first downloads to be flushed')
        await Promise.all([ledger.fetch(first, 'crash-a', 'seg.ts'), ledger.fetch(first, 'crash-c', 'clip.mp4')])
        const { go, open } = gate()
        let held: ReturnType<typeof heldDownload> | undefined
        if (engine === 'node') {
          // The node engine loses at most the last flush interval to a kill
          // -9 (docs/metering.md; fix-crash-loses-in-flight-response.test.ts
          // bounds it): flush first, and no download in flight, so that it too
          // must be exact here.
          await waitFor(() => flushed(first, 800_000), 5000, 'everything to be flushed')
        } else {
          // The nginx engine loses nothing to a kill -9 of streammeter: nginx
          // goes on serving and logging, and the restarted streammeter reads
          // the log from the committed position. So: kill at once, with the
          // last downloads probably unread and one download still in flight,
          // finished by the old nginx after the restart.
          held = heldDownload(first, 'crash-held', 'movie.mp4', go)
          await held.started
        }
        first.child.kill('SIGKILL')
        await first.exited
        const oldMaster = engine === 'nginx' ? nginxMasters(first.engineDir)[0] : undefined
        if (engine === 'nginx') assert.ok(oldMaster !== undefined, 'the old nginx runs on after kill -9 of streammeter')

        // Same port, same store, same ENGINE_DIR: the new nginx engine stops
        // the old nginx gracefully (its listeners close at once, its
        // responses finish) and starts its own.
        const second = await startEngineServer(t, engine, { ...env, PORT: String(first.port) }, first.engineDir)
        if (engine === 'nginx') {
          assert.deepEqual(nginxMasters(second.engineDir).filter((pid) => pid !== oldMaster).length, 1, 'a new nginx serves')
          second.nginxGroups.add(oldMaster!)
          // Stopped gracefully, not killed: the old nginx still sends the held download.
          assert.ok(nginxMasters(second.engineDir).includes(oldMaster!), 'the old nginx finishes its responses')
          assert.ok(await stillSending(second, ['crash-held']))
        }
        await Promise.all([ledger.fetch(second, 'crash-a', 'clip.mp4'), ledger.fetch(second, 'crash-d', 'seg.ts')])
        open()
        if (held !== undefined) {
          assert.equal(await held.done, FILES['movie.mp4'])
          ledger.add('crash-held', FILES['movie.mp4'])
          await waitFor(() => !nginxMasters(second.engineDir).includes(oldMaster!), 5000, 'the old nginx to exit')
        }
        await stopCleanly(second)
        assert.deepEqual(pick(receiver.totals(), receiver.totals().keys()), pick(ledger, ledger.keys()))
        assertStableBodies(receiver)
      })

      it('two instances on one Redis ledger: one report with the summed totals, exactly once', async (t) => {
        if (!engineOrSkip(t, engine) || !await redisOrSkip(t)) return
        const receiver = await newReceiver(t)
        const prefix = uniquePrefix(`engines-${engine}`)
        // The threshold is global: 'shared' qualifies only with both instances' bytes summed.
        const env = { ...settings(receiver, REDIS_URL), STORE_PREFIX: prefix, TRAFFIC_MIN_BYTES: '150000', TRAFFIC_REPORT_INTERVAL: '3600' }
        const [a, b] = await Promise.all([startEngineServer(t, engine, env), startEngineServer(t, engine, env)])
        cleanupPrefix(t, prefix) // after the servers' own cleanups: none is left to write the keys again
        const ledger = new Ledger()
        await Promise.all([
          ledger.fetch(a!, 'shared', 'seg.ts'), ledger.fetch(b!, 'shared', 'seg.ts'),
          ledger.fetch(a!, 'solo', 'clip.mp4'), ledger.fetch(b!, 'below', 'seg.ts')
        ])
        await waitFor(async () => (await trafficOf(a!)).current_traffic_summary.total_bytes === 600_000, 5000, 'both instances to flush')
        await stopCleanly(a!)
        await stopCleanly(b!)
        assertStableBodies(receiver)
        assert.equal(new Set(receiver.requests.map((r) => r.headers['idempotency-key'])).size, 1, 'one report')
        assert.deepEqual(Object.fromEntries(receiver.totals()), { shared: 200_000, solo: 300_000 }, '"below" stays under the threshold')
        assert.equal(requestsOf(receiver, 'shared'), 2)
        assert.equal(ledger.get('below'), 100_000)
      })
    })
  }
})
