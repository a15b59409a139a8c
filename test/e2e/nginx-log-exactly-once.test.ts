import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { policyOf, resolveMeterOptions } from '../../src/meter/index.ts'
import { openStore } from '../../src/store/index.ts'
import { REDIS_URL, cleanupPrefix, redisOrSkip, uniquePrefix } from '../helpers/redis.ts'
import { storeTotals } from '../helpers/report-bytes.ts'
import { logLine } from '../helpers/access-log.ts'

const child = new URL('../fixtures/log-meter-child.ts', import.meta.url).pathname

/** Start the metering child and wait for its `ready` line. */
async function start (url: string, log: string, prefix: string): Promise<ChildProcess> {
  const proc = spawn(process.execPath, ['--import', 'tsx', child, url, log, prefix], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise<void>((resolve, reject) => {
    let out = ''
    proc.stdout?.on('data', (c: Buffer) => {
      out += c.toString()
      if (out.includes('ready')) resolve()
    })
    proc.once('exit', (code) => reject(new Error(`the child exited ${code} before it was ready`)))
  })
  return proc
}

function line (uid: string, bytes: number, status = 200): string {
  return logLine(uid, bytes, status, Date.now() / 1000)
}

describe('metering from the access log is exact across kill -9', () => {
  for (const kind of ['sqlite', 'redis'] as const) {
    it(`${kind} store: every line is counted once however often the reader is killed mid-stream`, async (t) => {
      if (kind === 'redis' && !await redisOrSkip(t)) return
      await exactlyOnce(t, kind)
    })
  }
})

async function exactlyOnce (t: TestContext, kind: 'sqlite' | 'redis'): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sm-log-once-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const prefix = uniquePrefix('log-once')
  if (kind === 'redis') cleanupPrefix(t, prefix)
  const url = kind === 'redis' ? REDIS_URL : `sqlite:${join(dir, 'usage.db')}`
  const log = join(dir, 'access.log')
  const expected = new Map<string, number>()
  let written = 0
  const write = (n: number): void => {
    let text = ''
    for (let i = 0; i < n; i++) {
      const uid = `u${written % 37}`
      const bytes = 1000 + (written % 13) * 17
      // Every 11th line is a refusal: nothing to count, the position still moves.
      if (written % 11 === 0) text += line(uid, 96, 403)
      else {
        text += line(uid, bytes)
        expected.set(uid, (expected.get(uid) ?? 0) + bytes)
      }
      written++
    }
    appendFileSync(log, text)
  }

  let proc = await start(url, log, prefix)
  for (let round = 0; round < 6; round++) {
    // Lines arrive while the reader runs; then it is killed at an arbitrary moment.
    for (let k = 0; k < 10; k++) {
      write(150)
      await new Promise((resolve) => setTimeout(resolve, 10 + ((round * 7 + k * 3) % 40)))
    }
    proc.kill('SIGKILL')
    await new Promise((resolve) => proc.once('exit', resolve))
    write(100) // written while nobody reads
    proc = await start(url, log, prefix)
  }
  // A last stretch, read to the end, and a graceful stop.
  write(500)
  await new Promise((resolve) => setTimeout(resolve, 500))
  proc.kill('SIGTERM')
  await new Promise((resolve) => proc.once('exit', resolve))

  const store = await openStore(url, policyOf(resolveMeterOptions({ minBytes: 0 })), { prefix })
  try {
    // The graceful stop sealed the window: the usage is in reports, plus any records left.
    const { bytes: metered, requests } = await storeTotals(store)
    assert.deepEqual(new Map([...metered].sort()), new Map([...expected].sort()))
    assert.equal(requests, written - Math.ceil(written / 11))
  } finally {
    await store.close()
  }
}
