/**
 * A receiver answering 429 or 503 with `Retry-After` was retried on the
 * plain backoff (from 1 s), hammering it. Now the wait is at least what it
 * asked for (seconds or an HTTP-date), capped at the backoff cap (docs/report-format.md#request).
 * The waits are read from the delivery channel: no test sleeps them.
 */
import assert from 'node:assert/strict'
import diagnosticsChannel from 'node:diagnostics_channel'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { nextAttemptDelayMs, retryAfterMs } from '../../src/meter/index.ts'
import { Receiver } from '../helpers/receiver.ts'
import type { Answer } from '../helpers/receiver.ts'
import { MiB, makeCollector } from '../helpers/collector-fixture.ts'

interface Delivery { status?: number, result: string, retryInMs?: number }

/** The waits the reporter chose after each answer of `plan`, one delivery pass per answer. */
async function waitsAfter (t: TestContext, plan: Answer[]): Promise<Delivery[]> {
  const receiver = await Receiver.start([...plan])
  t.after(() => receiver.close())
  // retryBase 1 s, cap 300 s: the defaults.
  const { collector, clock } = makeCollector({ reportUrl: receiver.url })
  t.after(() => collector.close({ grace: 1 }))
  const seen: Delivery[] = []
  const listener = (message: unknown): void => { seen.push(message as Delivery) }
  diagnosticsChannel.subscribe('streammeter:delivery', listener)
  t.after(() => diagnosticsChannel.unsubscribe('streammeter:delivery', listener))
  collector.record({ uid: 'u', bytes: 2 * MiB, fileType: 'ts' })
  await collector.seal({ force: true })
  for (let i = 0; i < plan.length; i++) {
    clock.advance(1000)
    await collector.deliverPending()
  }
  return seen.map(({ status, result, retryInMs }) => ({ status, result, retryInMs }))
}

describe('Retry-After', () => {
  it('429 and 503 with delay-seconds: the next attempt waits that long, never less than the backoff', async (t) => {
    const waits = await waitsAfter(t, [
      { status: 429, headers: { 'retry-after': '120' } },
      { status: 503, headers: { 'retry-after': '0' } },
      500
    ])
    // random() is 0.5 in the fixture: the backoff is exactly 1 s, 2 s, 4 s.
    assert.deepEqual(waits, [
      { status: 429, result: 'failed', retryInMs: 120_000 },
      { status: 503, result: 'failed', retryInMs: 2000 },
      { status: 500, result: 'failed', retryInMs: 4000 }
    ])
  })

  it('an HTTP-date counts from the attempt; a date in the past asks for nothing', async (t) => {
    // The fixture's clock starts at 2026-01-01T00:00:00Z; each pass is 1 s later.
    const waits = await waitsAfter(t, [
      { status: 503, headers: { 'retry-after': 'Thu, 01 Jan 2026 00:01:31 GMT' } },
      { status: 429, headers: { 'retry-after': 'Wed, 31 Dec 2025 23:00:00 GMT' } }
    ])
    assert.deepEqual(waits.map((w) => w.retryInMs), [90_000, 2000])
  })

  it('is capped at the 5 min backoff cap, and honoured on any failure that carries it', async (t) => {
    const waits = await waitsAfter(t, [
      { status: 429, headers: { 'retry-after': '86400' } },
      { status: 502, headers: { 'retry-after': '30' } },
      { status: 400, headers: { 'retry-after': '45' } }
    ])
    assert.deepEqual(waits.map((w) => [w.status, w.retryInMs]), [[429, 300_000], [502, 30_000], [400, 45_000]])
  })

  it('parses delay-seconds and the three HTTP-date forms; anything else is no header', () => {
    const now = Date.UTC(1994, 10, 6, 8, 49, 0)
    assert.equal(retryAfterMs('30', now), 30_000)
    assert.equal(retryAfterMs([' 7 '], now), 7000)
    assert.equal(retryAfterMs('Sun, 06 Nov 1994 08:49:37 GMT', now), 37_000)
    assert.equal(retryAfterMs('Sunday, 06-Nov-94 08:49:37 GMT', now), 37_000)
    assert.equal(retryAfterMs('Sun Nov  6 08:49:37 1994', now - new Date(now).getTimezoneOffset() * 60_000), 37_000)
    assert.equal(retryAfterMs('Sun, 06 Nov 1994 08:48:00 GMT', now), 0)
    for (const bad of [undefined, '', '-1', '1.5', 'soon', 'Sun, 99 Foo 1994']) assert.equal(retryAfterMs(bad, now), undefined, String(bad))
    assert.equal(nextAttemptDelayMs(3, 1, 300, undefined, () => 0.5), 4000)
    assert.equal(nextAttemptDelayMs(3, 1, 300, 10_000, () => 0.5), 10_000)
    assert.equal(nextAttemptDelayMs(3, 1, 300, 1000, () => 0.5), 4000)
    assert.equal(nextAttemptDelayMs(1, 1, 300, 10_000_000, () => 0.5), 300_000)
  })
})
