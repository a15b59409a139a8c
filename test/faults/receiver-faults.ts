/**
 * Faults of the report receiver: errors, refusals, slowness. One streammeter
 * on SQLite, clients downloading as several uids, a receiver whose policy is
 * the fault; billed bytes are compared with received ones once the receiver
 * has everything (or the wait runs out) and the proxy has stopped.
 */
import { request } from 'undici'
import type { FaultReceiver, Policy } from './fault-receiver.ts'
import { account, baseEnv, fault, p99, serve, sleep, stop, until } from './scenario.ts'
import type { Clients, Fault } from './scenario.ts'
import type { CliServer } from '../helpers/cli-server.ts'

interface ReceiverFault {
  policy: Policy
  /** Extra settings. */
  env?: Record<string, string>
  /** uids × requests of each; `path` is the file every request fetches. @default 6 × 4 of /seg.ts */
  uids?: number
  perUid?: number
  path?: string
  /** How long to wait for the receiver to have everything. @default 30 s */
  waitMs?: number
  /** Runs while the traffic flows and the receiver misbehaves (operator steps, more traffic). */
  during?: (ctx: { server: CliServer, receiver: FaultReceiver, clients: Clients }) => Promise<void>
  note: (ctx: { receiver: FaultReceiver, clients: Clients, latencies: number[] }) => string
}

/**
 * A receiver fault named `name`; `make` gives its settings, and any state its
 * policy keeps, afresh for each run.
 */
function receiverFault (name: string, make: () => ReceiverFault): Fault {
  return fault(name, async ({ scope, receiver, media, clients, sqliteUrl }) => {
    const f = make()
    receiver.policy = f.policy
    const server = await serve(scope, baseEnv(media, receiver.url, { STORE_URL: sqliteUrl(), ...f.env }))
    const latencies: number[] = []
    const uids = Array.from({ length: f.uids ?? 6 }, (_, i) => `viewer-${i}`)
    await Promise.all(uids.map(async (uid) => {
      for (let i = 0; i < (f.perUid ?? 4); i++) {
        const started = performance.now()
        await clients.get(server.url, f.path ?? '/seg.ts', uid)
        latencies.push(performance.now() - started)
      }
    }))
    await f.during?.({ server, receiver, clients })
    await until(() => sameTotals(receiver.billed(), clients.received), f.waitMs ?? 30_000)
    const status = await stop(server)
    return account(name, clients, receiver.billed(), {
      note: `${f.note({ receiver, clients, latencies })}${receiver.changedBodies() > 0 ? '; BODY CHANGED ON RETRY' : ''}${status === 0 ? '' : `; exit ${String(status)}`}`
    })
  })
}

function sameTotals (a: ReadonlyMap<string, number>, b: ReadonlyMap<string, number>): boolean {
  if (a.size !== b.size) return false
  for (const [k, v] of a) if (b.get(k) !== v) return false
  return true
}

const posts = (r: FaultReceiver): string => `${r.received.length} POSTs for ${r.kept.length} reports`

/** The receiver faults, in the order of the table. */
export const receiverFaults: Fault[] = [
  receiverFault('receiver 500 ×3', () => ({
    policy: ({ n }) => n <= 3 ? 500 : 200,
    note: ({ receiver }) => `${posts(receiver)}; retried with backoff, same id and body`
  })),
  receiverFault('receiver 409', () => ({
    // The receiver stores the report but the answer is lost; the retry hears 409 "already have it".
    policy: ({ seen }) => seen === 0 ? { status: 200, drop: true } : 409,
    note: ({ receiver }) => `${posts(receiver)}; 409 taken as delivered`
  })),
  receiverFault('receiver 413', () => ({
    // nginx's default client_max_body_size is 1 MiB; 16 KiB here so that a
    // window of 120 uids is split twice.
    policy: ({ bytes }) => bytes > 16 * 1024 ? 413 : 200,
    uids: 120,
    perUid: 1,
    path: '/small.ts',
    note: ({ receiver }) => `${posts(receiver)}; too large reports split until accepted`
  })),
  receiverFault('receiver 400 forever', () => {
    let refused = ''
    let fixed = false
    return {
      policy: ({ id }) => {
        if (refused === '') refused = id
        return id === refused && !fixed ? 400 : 200
      },
      env: { TRAFFIC_REPORT_MAX_REJECTIONS: '3' },
      waitMs: 20_000,
      during: async ({ server, receiver, clients }) => {
        // Parked after 3 refusals; later windows go out meanwhile.
        await until(async () => (await outboxOf(server)).parked >= 1, 30_000)
        await clients.get(server.url, '/seg.ts', 'after-parking')
        await until(() => receiver.billed().has('after-parking'), 10_000)
        fixed = true // the receiver's operator fixes it, ours replays the parked report
        await request(`${server.url}/api/outbox/retry`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"all":true}' })
      },
      note: ({ receiver }) => `${posts(receiver)}; parked after 3 refusals, later windows delivered, replayed by POST /api/outbox/retry`
    }
  }),
  receiverFault('receiver 6 s delays', () => ({
    // Stored, then answered after 6 s: past TRAFFIC_REPORT_TIMEOUT=5 for the first two attempts of each.
    policy: ({ seen }) => seen < 2 ? { status: 200, delayMs: 6000 } : 200,
    env: { TRAFFIC_REPORT_TIMEOUT: '5' },
    waitMs: 60_000,
    note: ({ receiver }) => `${posts(receiver)}; attempts timed out at 5 s, resent with the same id`
  })),
  receiverFault('slow receiver', () => ({
    policy: () => ({ status: 200, delayMs: 1500 }),
    uids: 8,
    perUid: 40,
    note: ({ receiver, latencies }) => `${posts(receiver)}; answers after 1.5 s; media p99 ${p99(latencies)} ms meanwhile`
  }))
]

async function outboxOf (server: CliServer): Promise<{ parked: number }> {
  try {
    const res = await request(`${server.url}/api/outbox`)
    const body = await res.body.json() as { stats?: { parked?: number }, parked?: unknown[] }
    return { parked: body.stats?.parked ?? (Array.isArray(body.parked) ? body.parked.length : 0) }
  } catch {
    await sleep(100)
    return { parked: 0 }
  }
}
