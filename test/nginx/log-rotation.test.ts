import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { appendFileSync, closeSync, existsSync, mkdtempSync, openSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { EngineError } from '../../src/errors.ts'
import { GENERATION_SPAN, encodePosition, generationOf } from '../../src/server/nginx/log-rotation.ts'
import { logLine, readerOf, tally } from '../helpers/access-log.ts'

function logDir (t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'sm-log-rot-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** An nginx stand-in: a descriptor open for appending, as an nginx worker holds the log. */
function writer (file: string): { write: (text: string) => void, close: () => void } {
  const fd = openSync(file, 'a')
  return { write: (text) => { writeSync(fd, text) }, close: () => { closeSync(fd) } }
}

describe('rotating the access log while nginx writes it', () => {
  it('renames the live file past maxBytes, creates it again owner-only and asks nginx to reopen', (t) => {
    const log = join(logDir(t), 'access.log')
    writeFileSync(log, '', { mode: 0o600 })
    const seen = tally()
    let reopened = 0
    const reader = readerOf(log, seen, { rotate: { maxBytes: 500, reopen: () => { reopened++ } } })
    const nginx = writer(log)
    t.after(() => { nginx.close() })
    nginx.write(logLine('a', 100).repeat(3))
    assert.equal(reader.read(), 3) // under 1000 bytes: no rotation
    assert.equal(reopened, 0)
    nginx.write(logLine('a', 100).repeat(10))
    // Past 500 bytes: renamed before the read, the lines are read from access.log.0.
    assert.equal(reader.read(), 10)
    assert.equal(reader.rotations, 1)
    assert.equal(reader.read(), 0) // nginx still holds generation 0
    assert.equal(reopened, 1)
    assert.ok(existsSync(`${log}.0`))
    assert.equal(statSync(log).size, 0)
    assert.equal(statSync(log).mode & 0o777, 0o600)
    assert.equal(reader.generation, 0)
    assert.equal(seen.bytes.get('a'), 1300)
  })

  it('reads lines appended to the renamed file until the writer closes it, then the new live file', (t) => {
    const log = join(logDir(t), 'access.log')
    writeFileSync(log, '', { mode: 0o600 })
    const seen = tally()
    const reader = readerOf(log, seen, { rotate: { maxBytes: 200, reopen: () => {} } })
    const old = writer(log)
    old.write(logLine('a', 10).repeat(5))
    assert.equal(reader.read(), 5) // past 200 bytes: renamed first
    assert.ok(existsSync(`${log}.0`))
    // The worker has not reopened yet: it goes on writing to generation 0,
    // and a reopened one writes to the new live file (generation 1).
    old.write(logLine('a', 20).repeat(2))
    const fresh = writer(log)
    t.after(() => { fresh.close() })
    fresh.write(logLine('b', 1000))
    assert.equal(reader.read(), 2)
    assert.equal(reader.read(), 0)
    assert.equal(reader.generation, 0, 'a writer still holds generation 0: its end is not its end yet')
    const last = logLine('a', 40)
    old.write(logLine('a', 30) + last.slice(0, 12)) // a last line, and one being written
    assert.equal(reader.read(), 1)
    old.write(last.slice(12))
    old.close()
    // Closed: generation 0 is read to its end and the reader moves on, in
    // one read that holds no line of generation 1.
    assert.equal(reader.read(), 1)
    assert.equal(reader.position, encodePosition(1, 0))
    assert.equal(seen.bytes.get('b'), undefined)
    assert.equal(reader.read(), 1)
    assert.deepEqual(Object.fromEntries(seen.bytes), { a: 5 * 10 + 2 * 20 + 30 + 40, b: 1000 })
  })

  it('waits for a writer in another process, but not for one that only reads', async (t) => {
    const log = join(logDir(t), 'access.log')
    writeFileSync(log, logLine('a', 10).repeat(10), { mode: 0o600 })
    const seen = tally()
    const reader = readerOf(log, seen, { rotate: { maxBytes: 100, reopen: () => {} } })
    const fd = openSync(log, 'a')
    // A process that holds the log as its stdout, as an nginx worker holds it.
    const child = spawn('sleep', ['30'], { stdio: ['ignore', fd, 'ignore'], detached: true })
    closeSync(fd)
    t.after(() => { try { process.kill(-(child.pid ?? 0), 'SIGKILL') } catch {} })
    const tail = openSync(log, 'r') // `tail -f` does not hold generation 0 back
    t.after(() => { closeSync(tail) })
    assert.equal(reader.read(), 10) // rotated first: the 10 lines are generation 0
    assert.equal(reader.rotations, 1)
    assert.equal(reader.read(), 0)
    assert.equal(reader.generation, 0)
    process.kill(-(child.pid ?? 0), 'SIGKILL')
    await new Promise((resolve) => child.once('exit', resolve))
    reader.read()
    assert.equal(reader.generation, 1)
    assert.equal(seen.bytes.get('a'), 100)
  })

  it('reports an unfinished last line of a rotated file nobody writes any more, and skips it', (t) => {
    const log = join(logDir(t), 'access.log')
    writeFileSync(`${log}.0`, logLine('a', 10) + '{"uid":"a","bytes":99', { mode: 0o600 })
    writeFileSync(log, logLine('b', 5), { mode: 0o600 })
    const seen = tally()
    const bad: string[] = []
    const reader = readerOf(log, seen, { onBadLine: (line) => bad.push(line) })
    const nginx = writer(`${log}.0`)
    assert.equal(reader.read(), 1)
    assert.equal(reader.read(), 0)
    assert.deepEqual(bad, [], 'still being written: not a bad line yet')
    nginx.close()
    assert.equal(reader.read(), 0)
    assert.deepEqual(bad, ['{"uid":"a","bytes":99'])
    assert.equal(reader.position, encodePosition(1, 0))
    assert.equal(reader.read(), 1)
    assert.deepEqual(Object.fromEntries(seen.bytes), { a: 10, b: 5 })
  })

  it('without /proc, moves on once the rotated file has not changed for 10 s', (t) => {
    const log = join(logDir(t), 'access.log')
    writeFileSync(`${log}.0`, logLine('a', 10))
    writeFileSync(log, logLine('b', 5))
    let now = Date.now()
    const reader = readerOf(log, tally(), { proc: join(logDir(t), 'no-proc'), now: () => now })
    assert.equal(reader.read(), 1)
    assert.equal(reader.read(), 0)
    now += 9000
    reader.read()
    assert.equal(reader.generation, 0)
    now += 2000
    reader.read()
    assert.equal(reader.generation, 1)
  })

  it('asks nginx to reopen again when a writer keeps the newest rotated file 2 s later', (t) => {
    const log = join(logDir(t), 'access.log')
    writeFileSync(log, logLine('a', 10).repeat(5), { mode: 0o600 })
    let now = Date.now()
    let reopened = 0
    const reader = readerOf(log, tally(), { now: () => now, rotate: { maxBytes: 100, reopen: () => { reopened++ } } })
    const nginx = writer(log)
    t.after(() => { nginx.close() })
    reader.read() // rotates, reopen #1, which this writer misses
    reader.read()
    assert.equal(reopened, 1)
    now += 1000
    reader.read()
    assert.equal(reopened, 1)
    now += 1000
    reader.read()
    assert.equal(reopened, 2)
    now += 500
    reader.read()
    assert.equal(reopened, 2, 'at most every 2 s')
    now += 1500
    reader.read()
    assert.equal(reopened, 3)
  })

  it('creates a missing live file owner-only and asks nginx to reopen', (t) => {
    const log = join(logDir(t), 'access.log')
    let reopened = 0
    const reader = readerOf(log, tally(), { rotate: { reopen: () => { reopened++ } } })
    assert.equal(reader.read(), 0)
    assert.equal(statSync(log).mode & 0o777, 0o600)
    assert.equal(reopened, 1)
    reader.read()
    assert.equal(reopened, 1)
  })

  it('refuses to read past 4 GiB of one generation, with the reason', (t) => {
    const log = join(logDir(t), 'access.log')
    const line = logLine('a', 10)
    const fd = openSync(log, 'w')
    // Sparse: two lines just below 4 GiB, the second one crossing it.
    const start = GENERATION_SPAN - line.length - 20
    writeSync(fd, line, start)
    writeSync(fd, line, start + line.length)
    closeSync(fd)
    const seen = tally()
    const reader = readerOf(log, seen, { position: start })
    assert.equal(reader.read(), 1)
    assert.equal(generationOf(reader.position), 0)
    assert.throws(() => reader.read(), (err: unknown) => err instanceof EngineError && /longer than 4 GiB/.test(err.message))
    assert.equal(seen.bytes.get('a'), 10)
  })

  it('refuses a rotation size a generation cannot hold', (t) => {
    const log = join(logDir(t), 'access.log')
    assert.throws(() => readerOf(log, tally(), { rotate: { maxBytes: 2 ** 31, reopen: () => {} } }), RangeError)
    appendFileSync(log, '')
  })
})
