import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { ManualClock } from '../../src/meter/index.ts'
import type { UsagePolicy } from '../../src/meter/index.ts'
import { SqliteStore } from '../../src/store/index.ts'

const POLICY: UsagePolicy = { minBytes: 1000, accumulatorTimeoutMs: 10_000, maxIps: 3, maxSessions: 2 }
const TTL = 3000

/** Two stores on one file, as two worker processes have them, reading one manual clock. */
function twoStores (t: TestContext): { a: SqliteStore, b: SqliteStore, clock: ManualClock, path: string } {
  const dir = mkdtempSync(join(tmpdir(), 'sm-sqlite-lease-'))
  const path = join(dir, 'usage.db')
  const clock = new ManualClock()
  const a = new SqliteStore(path, POLICY, { clock })
  const b = new SqliteStore(path, POLICY, { clock })
  t.after(async () => {
    await a.close()
    await b.close()
    rmSync(dir, { recursive: true, force: true })
  })
  return { a, b, clock, path }
}

describe('the reporter lease of the sqlite store', () => {
  it('one holder at a time: the other gets 0 while it renews', async (t) => {
    const { a, b, clock } = twoStores(t)
    const fence = await a.leadership('a', TTL)
    assert.ok(fence > 0)
    assert.equal(await b.leadership('b', TTL), 0)
    // Renewals keep it (and its number) past the first TTL.
    for (let i = 0; i < 5; i++) {
      clock.advance(TTL - 1)
      assert.equal(await a.leadership('a', TTL), fence)
      assert.equal(await b.leadership('b', TTL), 0)
    }
  })

  it('an expired lease goes to the next asker, with a greater fence; the old holder then gets 0', async (t) => {
    const { a, b, clock } = twoStores(t)
    const first = await a.leadership('a', TTL)
    clock.advance(TTL - 1)
    assert.equal(await b.leadership('b', TTL), 0, 'not yet expired')
    clock.advance(1)
    const second = await b.leadership('b', TTL)
    assert.ok(second > first, `fence ${second} after ${first}`)
    assert.equal(await a.leadership('a', TTL), 0)
  })

  it('a release hands over at once; releasing a lease one does not hold changes nothing', async (t) => {
    const { a, b } = twoStores(t)
    const first = await a.leadership('a', TTL)
    await b.releaseLeadership('b')
    assert.equal(await b.leadership('b', TTL), 0)
    await a.releaseLeadership('a')
    const second = await b.leadership('b', TTL)
    assert.equal(second, first + 1)
    // The same holder taking it again after a release is a new term: a new number.
    await b.releaseLeadership('b')
    assert.equal(await a.leadership('a', TTL), first + 2)
  })

  it('the lease and its fence survive a reopen of the file', async (t) => {
    const { a, clock, path } = twoStores(t)
    const fence = await a.leadership('a', TTL)
    const reopened = new SqliteStore(path, POLICY, { clock })
    t.after(() => reopened.close())
    assert.equal(await reopened.leadership('c', TTL), 0, 'held by a live process (this one)')
    await a.releaseLeadership('a')
    assert.equal(await reopened.leadership('c', TTL), fence + 1)
  })

  it('a holder process killed with SIGKILL: its lease is free at once, long before the TTL', async (t) => {
    const { a, path } = twoStores(t)
    const store = new URL('../../src/store/index.ts', import.meta.url).href
    // A process that takes the lease for an hour, says so, and waits to be killed.
    const code = `
      const { SqliteStore } = await import(${JSON.stringify(store)})
      const s = new SqliteStore(${JSON.stringify(path)}, ${JSON.stringify(POLICY)})
      process.stdout.write('fence ' + await s.leadership('child', 3_600_000) + '\\n')
      setInterval(() => {}, 1000)`
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] })
    t.after(() => child.kill('SIGKILL'))
    const childFence = await new Promise<number>((resolve, reject) => {
      let out = ''
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString()
        const m = /fence (\d+)\n/.exec(out)
        if (m !== null) resolve(Number(m[1]))
      })
      child.on('exit', (status) => reject(new Error(`child exited with ${String(status)}`)))
    })
    assert.ok(childFence > 0)
    assert.equal(await a.leadership('a', TTL), 0, 'held while the child runs')
    const exited = new Promise((resolve) => child.on('close', resolve))
    child.kill('SIGKILL')
    await exited
    assert.equal(await a.leadership('a', TTL), childFence + 1)
  })
})
