/**
 * `streammeter serve` on a given store, reporting every byte (TRAFFIC_MIN_BYTES=0,
 * 1 s windows) to a receiver, with a media root of three files: what the
 * tests of "nothing delivered is billed again" need around a store fault.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { request } from 'undici'
import { startCliServer } from './cli-server.ts'
import type { CliServer } from './cli-server.ts'
import { Receiver } from './receiver.ts'
import type { Answer } from './receiver.ts'
import { download } from './serve-fleet.ts'

/** The media files and their sizes. */
export const FILES = { 'seg.ts': 300_000, 'part.m4s': 100_000, 'small.ts': 10_000 } as const

export interface BillingRig {
  receiver: Receiver
  server: CliServer
  /** Body bytes each uid received. */
  got: Map<string, number>
  /** Download `file` for `uid` through the server (it must be served whole); counts it in `got`. */
  fetch: (uid: string, file: keyof typeof FILES) => Promise<void>
}

/** Start the rig on `storeUrl`; the receiver answers from `plan`, then 200. Everything is cleaned up after the test. */
export async function startBillingRig (t: TestContext, storeUrl: string, plan: Answer[] = []): Promise<BillingRig> {
  const root = mkdtempSync(join(tmpdir(), 'sm-billing-'))
  t.after(() => rmSync(root, { recursive: true, force: true }))
  for (const [name, size] of Object.entries(FILES)) writeFileSync(join(root, name), Buffer.alloc(size, 5))
  const receiver = await Receiver.start(plan)
  t.after(() => receiver.close())
  const server = await startCliServer({
    ORIGIN_ROOT: root,
    STORE_URL: storeUrl,
    STORE_PREFIX: 'billing',
    TRAFFIC_MIN_BYTES: '0', // every byte is reported: totals must match exactly
    TRAFFIC_REPORT_INTERVAL: '1',
    TRAFFIC_FLUSH_INTERVAL: '0.2',
    TRAFFIC_REPORT_URL: receiver.url,
    SHUTDOWN_GRACE: '10',
    LOG_LEVEL: 'info'
  })
  t.after(() => { if (server.child.exitCode === null) server.child.kill('SIGKILL') })
  const got = new Map<string, number>()
  const fetch = async (uid: string, file: keyof typeof FILES): Promise<void> => {
    const { status, bytes } = await download(server, `/${file}?uid=${uid}`)
    assert.equal(status, 200)
    assert.equal(bytes, FILES[file])
    got.set(uid, (got.get(uid) ?? 0) + bytes)
  }
  return { receiver, server, got, fetch }
}

/**
 * Every uid's bytes are in one accepted report id only (nothing was billed
 * again under another id), and every request for one report id carried the
 * same body.
 */
export function assertBilledOnce (receiver: Receiver): void {
  const seen = new Map<string, string>()
  for (const report of receiver.reports) {
    for (const d of report.traffic_details as Array<{ uid: string, total_bytes: number }>) {
      const key = `${d.uid}:${d.total_bytes}`
      assert.ok(!seen.has(key), `${d.uid} (${d.total_bytes} bytes) in reports ${seen.get(key)} and ${String(report.report_id)}`)
      seen.set(key, String(report.report_id))
    }
  }
  for (const r of receiver.requests) {
    const first = receiver.requests.find((o) => o.headers['idempotency-key'] === r.headers['idempotency-key'])
    assert.equal(r.body, first?.body)
  }
}

/** A map as sorted entries, for deepEqual. */
export function sorted (m: ReadonlyMap<string, number>): Array<[string, number]> {
  return [...m].sort()
}

/** `GET /health`: its status code, parsed body and raw text. */
export async function healthOf (server: CliServer): Promise<{ code: number, body: Record<string, any>, text: string }> {
  const res = await request(`${server.url}/health`)
  const text = await res.body.text()
  return { code: res.statusCode, body: JSON.parse(text), text }
}
