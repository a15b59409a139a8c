/**
 * A Redis restart must never re-bill delivered usage under new report ids
 * (docs/report-format.md#durable-seals). Real processes: redis-server instances of the test's own
 * (killed with SIGKILL and restarted from their own files, or frozen with
 * SIGSTOP), `streammeter serve`, and a receiver that counts what it accepted.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { Redis } from 'ioredis'
import { assertBilledOnce, healthOf as health, sorted, startBillingRig } from '../helpers/billing-rig.ts'
import type { BillingRig } from '../helpers/billing-rig.ts'
import { OwnRedis, ownRedisSuite } from '../helpers/own-redis.ts'
import type { OwnRedisOptions } from '../helpers/own-redis.ts'
import type { Answer } from '../helpers/receiver.ts'
import { stopGracefully, trafficOf } from '../helpers/serve-fleet.ts'
import { waitFor } from '../helpers/wait.ts'

/** A redis-server of the test's own and the billing rig on it. */
async function rig (t: TestContext, redisOptions: OwnRedisOptions = {}, plan: Answer[] = []): Promise<BillingRig & { redis: OwnRedis }> {
  const redis = await OwnRedis.start(redisOptions)
  t.after(() => redis.destroy())
  return { redis, ...await startBillingRig(t, redis.url, plan) }
}

describe('a Redis restart does not re-bill delivered usage', ownRedisSuite, () => {
  it('AOF with appendfsync always, SIGKILLed while a report is in flight and restarted from its own files: every byte billed once', async (t) => {
    let answer!: (status: number) => void
    const held = new Promise<number>((resolve) => { answer = resolve })
    t.after(() => answer(200))
    // The first report is answered at once, the second is held open across the crash.
    const { receiver, redis, server, got, fetch } = await rig(t, {}, [200, { hold: held }])
    await fetch('dave', 'seg.ts')
    await waitFor(() => receiver.totals().get('dave') === 300_000, 8000, 'dave delivered')
    await fetch('dave', 'part.m4s')
    await fetch('erin', 'seg.ts')
    await receiver.waitForRequests(2, 8000)
    const inFlight = String(receiver.requests[1]?.headers['idempotency-key'])

    await redis.kill()
    answer(200) // the receiver has it; the acknowledgement cannot reach Redis now
    await fetch('erin', 'small.ts') // kept in memory during the outage
    await redis.resume()
    await waitFor(async () => (await health(server)).code === 200, 10_000, '/health ok after the restart')
    await fetch('dave', 'small.ts')
    const durable = await health(server)
    await waitFor(async () => {
      const s = await trafficOf(server)
      return s.current_traffic_summary.unflushed_bytes === 0 && s.outbox.pending === 0 && receiver.totals().get('dave') === 410_000
    }, 10_000, 'everything delivered after the restart')
    assert.equal(await stopGracefully(server), 0, server.output())

    assert.deepEqual(sorted(receiver.totals()), sorted(got))
    assert.deepEqual(sorted(got), [['dave', 410_000], ['erin', 310_000]])
    assertBilledOnce(receiver)
    // The report in flight at the crash went again under its own id, or not at all.
    assert.ok(receiver.requests.filter((r) => r.headers['idempotency-key'] === inFlight).length >= 1)
    assert.doesNotMatch(server.output(), /not durable/)
    assert.deepEqual([durable.body.store.durable, durable.body.store.durability], [true, 'aof-always'])
  })

  it('the reproduced setup (no AOF): the start-up log says in one line that a restart can re-bill, and /health shows it', async (t) => {
    const { server, fetch, receiver } = await rig(t, { args: ['--appendonly', 'no'] })
    const warnings = server.output().split('\n').filter((line) => /a Redis restart can lose or re-bill the last window/.test(line))
    assert.equal(warnings.length, 1, server.output())
    assert.equal(JSON.parse(warnings[0]!).durability, 'aof-off')
    const h = await health(server)
    assert.equal(h.code, 200)
    assert.deepEqual(h.body.store, { kind: 'redis', ok: true, error: null, durable: false, durability: 'aof-off' })
    assert.doesNotMatch(h.text, /127\.0\.0\.1|localhost|7\.0|redis_version/)
    // Not durable is a warning, not an outage: usage is still delivered.
    await fetch('dave', 'seg.ts')
    await waitFor(() => receiver.totals().get('dave') === 300_000, 8000, 'dave delivered')
    assert.equal(await stopGracefully(server), 0)
  })

  it('a seal no replica acknowledged is not delivered until one does (WAIT), then exactly once', async (t) => {
    // No delay before the replica's first sync (5 s by default).
    const { receiver, redis: master, server, got, fetch } = await rig(t, { args: ['--appendonly', 'no', '--repl-diskless-sync-delay', '0'] })
    const replica = await OwnRedis.start({ args: ['--appendonly', 'no', '--replicaof', '127.0.0.1', String(master.port)] })
    t.after(() => replica.destroy())
    const client = new Redis(master.url)
    t.after(() => client.quit())
    await waitFor(async () => /slave0:.*state=online/.test(await client.info('replication')), 10_000, 'replica online')

    await fetch('dave', 'seg.ts')
    await waitFor(() => receiver.totals().get('dave') === 300_000, 8000, 'dave delivered while the replica acknowledges')

    replica.pause(true)
    await fetch('erin', 'seg.ts')
    // The window is sealed (the report is in the outbox) but held back.
    await waitFor(async () => (await trafficOf(server)).outbox.pending === 1 || receiver.totals().has('erin'), 8000, 'erin sealed')
    await new Promise((resolve) => setTimeout(resolve, 2500))
    assert.equal(receiver.totals().get('erin'), undefined, 'delivered before any replica had the seal')
    assert.equal((await trafficOf(server)).outbox.pending, 1)

    const h = await health(server)
    assert.deepEqual([h.body.store.durable, h.body.store.durability], [true, 'replicas'])
    replica.pause(false)
    await waitFor(() => receiver.totals().get('erin') === 300_000, 10_000, 'erin delivered once the replica acknowledged')
    assert.equal(await stopGracefully(server), 0, server.output())
    assert.deepEqual(sorted(receiver.totals()), sorted(got))
    assertBilledOnce(receiver)
  })
})
