import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { TrafficCollector, policyOf, resolveMeterOptions } from '../../src/meter/index.ts'
import type { LogCursor, UsageDelta } from '../../src/meter/index.ts'
import { MemoryStore } from '../../src/store/index.ts'
import { ClientIpResolver } from '../../src/server/access/client-ip.ts'
import { MeteringInput } from '../../src/server/metering/metering-input.ts'
import { AccessLogReader } from '../../src/server/nginx/access-log-reader.ts'
import { encodePosition } from '../../src/server/nginx/log-rotation.ts'
import { logLine, readerOf, tally } from '../helpers/access-log.ts'

function logDir (t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'sm-log-restart-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

const rotatedNames = (dir: string): string[] => readdirSync(dir).filter((n) => /^access\.log\.\d+$/.test(n)).sort()

/** Read until nothing moves. */
function drain (reader: AccessLogReader): void {
  for (let last = -1; last !== reader.position;) {
    last = reader.position
    reader.read()
  }
}

describe('restarting the reader of a rotated log', () => {
  it('deletes the rotated files the committed position is past, and resumes in the middle of a rotated one', (t) => {
    const dir = logDir(t)
    const log = join(dir, 'access.log')
    // Killed after the commit of generation 4's first line, before generation 3 was deleted.
    const first = logLine('c', 30)
    writeFileSync(`${log}.2`, logLine('x', 1))
    writeFileSync(`${log}.3`, logLine('x', 2))
    writeFileSync(`${log}.4`, first + logLine('c', 40))
    writeFileSync(log, logLine('d', 7))
    const seen = tally()
    const reader = readerOf(log, seen, { position: encodePosition(4, first.length) })
    drain(reader)
    assert.deepEqual(Object.fromEntries(seen.bytes), { c: 40, d: 7 })
    assert.deepEqual(rotatedNames(dir), ['access.log.4'], 'only files before the committed generation go')
    reader.markCommitted(reader.position)
    assert.deepEqual(rotatedNames(dir), [])
    assert.equal(reader.position, encodePosition(5, logLine('d', 7).length), 'the live file is the generation after the newest rotated one')
  })

  it('after a crash between reading a generation to its end and the commit, reads its tail again, once', (t) => {
    const log = join(logDir(t), 'access.log')
    const head = logLine('a', 1).repeat(3)
    writeFileSync(`${log}.0`, head + logLine('a', 100).repeat(2))
    writeFileSync(log, logLine('b', 5))
    // The store holds the position after the first three lines: the last two
    // were read before the crash but never committed.
    const seen = tally()
    drain(readerOf(log, seen, { position: head.length }))
    assert.deepEqual(Object.fromEntries(seen.bytes), { a: 200, b: 5 })
  })

  it('after a crash between the rename and the new live file, creates it and asks nginx to reopen', (t) => {
    const dir = logDir(t)
    const log = join(dir, 'access.log')
    writeFileSync(`${log}.0`, logLine('a', 10), { mode: 0o600 })
    let reopened = 0
    const seen = tally()
    const reader = readerOf(log, seen, { rotate: { maxBytes: 10_000, reopen: () => { reopened++ } } })
    drain(reader)
    assert.equal(reopened, 1)
    assert.equal(statSync(log).mode & 0o777, 0o600)
    assert.equal(reader.generation, 1)
    writeFileSync(log, logLine('b', 20))
    drain(reader)
    assert.deepEqual(Object.fromEntries(seen.bytes), { a: 10, b: 20 })
  })

  it('replays a batch that ended a generation exactly, and one inside a generation exactly', (t) => {
    const log = join(logDir(t), 'access.log')
    const line = logLine('a', 10)
    writeFileSync(`${log}.0`, line.repeat(4))
    writeFileSync(log, logLine('b', 1000))
    // A batch from after line 1 to the end of generation 0, possibly applied in part.
    const seen = tally()
    const reader = readerOf(log, seen, { position: line.length, replayTo: encodePosition(1, 0), maxBytesPerRead: line.length })
    assert.equal(reader.read(), 3, 'the whole batch, past maxBytesPerRead')
    assert.equal(reader.position, encodePosition(1, 0))
    assert.deepEqual(Object.fromEntries(seen.bytes), { a: 30 })
    // A batch inside generation 0.
    const again = tally()
    const inside = readerOf(log, again, { position: line.length, replayTo: 3 * line.length })
    assert.equal(inside.read(), 2)
    assert.equal(inside.position, 3 * line.length)
    drain(inside)
    assert.deepEqual(Object.fromEntries(again.bytes), { a: 30, b: 1000 })
  })

  it('goes on past a rotated file someone else deleted, and says so', (t) => {
    const log = join(logDir(t), 'access.log')
    writeFileSync(`${log}.5`, logLine('a', 10))
    writeFileSync(log, logLine('b', 20))
    const missing: string[] = []
    const seen = tally()
    const reader = readerOf(log, seen, { position: encodePosition(3, 100), onMissingFile: (f) => missing.push(f) })
    drain(reader)
    assert.deepEqual(missing, [`${log}.3`])
    assert.deepEqual(Object.fromEntries(seen.bytes), { a: 10, b: 20 })
    assert.equal(reader.generation, 6)
  })

  it('attached, deletes a rotated file only once the store committed a position past it', async (t) => {
    const dir = logDir(t)
    const log = join(dir, 'access.log')
    writeFileSync(`${log}.0`, logLine('a', 10).repeat(3))
    writeFileSync(log, logLine('b', 20))
    const options = resolveMeterOptions({ minBytes: 0, workerId: 'rotation-test' })
    let down = false
    const cursors: LogCursor[] = []
    class FlakyStore extends MemoryStore {
      override async flush (deltas: readonly UsageDelta[], id?: string, cursor?: LogCursor): ReturnType<MemoryStore['flush']> {
        if (down) throw new Error('store down')
        if (cursor !== undefined) cursors.push(cursor)
        return await super.flush(deltas, id, cursor)
      }
    }
    const store = new FlakyStore(policyOf(options))
    const collector = new TrafficCollector(options, { store })
    const reader = new AccessLogReader({ path: log, key: 'nginx:test', metering: new MeteringInput(collector, Date.now), ips: new ClientIpResolver() })
    reader.attach(collector)
    t.after(() => { reader.close() })
    down = true
    await assert.rejects(collector.flush()) // generation 0 read to its end and past: the batch is held
    assert.equal(reader.position, encodePosition(1, 0))
    await assert.rejects(collector.flush())
    assert.ok(existsSync(`${log}.0`), 'the store does not hold the position past it yet')
    down = false
    await collector.flush() // the held batch goes first, then the hook deletes
    assert.ok(!existsSync(`${log}.0`))
    await collector.flush()
    assert.deepEqual(cursors.map((c) => c.position), [encodePosition(1, 0), encodePosition(1, logLine('b', 20).length)])
    const records = new Map((await store.records()).map((r) => [r.uid, r.bytes]))
    assert.deepEqual(Object.fromEntries(records), { a: 30, b: 20 })
    await collector.close({ grace: 1 })
  })
})
