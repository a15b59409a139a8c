import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import type { UsagePolicy, UsageStore } from '../../src/meter/index.ts'
import { MemoryStore, SqliteStore } from '../../src/store/index.ts'
import { makeCollector } from '../helpers/collector-fixture.ts'

const INTERVAL = 300 // seconds
const YEAR = 365 * 24 * 3600_000

const stores: Record<string, (t: TestContext, policy: UsagePolicy) => UsageStore> = {
  memory: (_t, policy) => new MemoryStore(policy),
  sqlite: (t, policy) => {
    const dir = mkdtempSync(join(tmpdir(), 'sm-clock-'))
    const store = new SqliteStore(join(dir, 'usage.db'), policy)
    t.after(async () => {
      await store.close()
      rmSync(dir, { recursive: true, force: true })
    })
    return store
  }
}

// Found: with the clock set a year ahead, one seal, then the clock put
// right: three windows stayed unsealed, next_report_in_seconds = 31535096.
for (const [kind, open] of Object.entries(stores)) {
  describe(`a wall-clock jump (${kind} store)`, () => {
    it('set forward a year seals once; put right, windows seal every interval again', async (t) => {
      const { collector, clock, store } = makeCollector({ minBytes: 0, reportInterval: INTERVAL }, { storeFactory: (p) => open(t, p) })
      const t0 = clock.now()
      await collector.tick() // schedules the first seal
      collector.record({ uid: 'before', bytes: 1000, fileType: 'ts' })

      clock.set(t0 + YEAR)
      await collector.tick()
      assert.deepEqual((await store.outbox()).map((e) => e.bytes), [1000], 'the jump forward seals once')
      clock.advance(1000)
      await collector.tick()
      assert.equal((await store.outbox()).length, 1, 'and only once')

      clock.set(t0 + 10_000) // corrected
      for (let window = 1; window <= 3; window++) {
        collector.record({ uid: `w${window}`, bytes: window * 100, fileType: 'ts' })
        await collector.tick()
        const next = (await collector.status()).current_state.next_report_in_seconds
        assert.ok(next <= INTERVAL, `window ${window}: next report in ${next} s`)
        assert.deepEqual((await store.outbox()).slice(1).map((e) => e.bytes), [100, 200, 300].slice(0, window), `window ${window} sealed`)
        clock.advance(INTERVAL * 1000)
      }
    })

    it('set back a day never stops seals and loses nothing', async (t) => {
      const { collector, clock, store } = makeCollector({ minBytes: 0, reportInterval: INTERVAL }, { storeFactory: (p) => open(t, p) })
      const t0 = clock.now()
      await collector.tick()
      collector.record({ uid: 'a', bytes: 700, fileType: 'ts' })
      clock.set(t0 - 24 * 3600_000)
      collector.record({ uid: 'a', bytes: 300, fileType: 'ts' })
      await collector.tick()
      const [report] = await store.outbox()
      assert.equal(report?.bytes, 1000)
      assert.equal((await collector.status()).current_state.next_report_in_seconds, INTERVAL)
    })
  })
}
