import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { it } from 'node:test'
import { Receiver } from '../helpers/receiver.ts'
import { deadOriginUrl } from '../helpers/static-origin.ts'

const child = new URL('../fixtures/meter-child.ts', import.meta.url).pathname
const FLUSH_MS = 200
const TIMER_SLACK_MS = 150

it('SIGKILL after sealing with the receiver down: a new process delivers every sealed report once, losing at most one flush interval', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sm-durability-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const db = join(dir, 'meter.db')

  // 1. Record with the receiver down until three windows are sealed, then SIGKILL.
  const rec = spawn(process.execPath, ['--import', 'tsx', child, 'record', db, `${await deadOriginUrl()}report`], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  const sealedIds: string[] = []
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('child did not seal three windows in 20 s')), 20_000)
    rec.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      const count = out.split('\n').filter((l) => l.startsWith('sealed ')).length
      if (count >= 3) {
        clearTimeout(timer)
        // Let it run into the middle of a window so that unsealed deltas exist.
        setTimeout(() => {
          rec.kill('SIGKILL')
          resolve()
        }, 350)
      }
    })
    rec.on('exit', (code) => { if (code !== null) reject(new Error(`child exited early with ${code}`)) })
  })
  await new Promise<void>((resolve) => rec.on('close', () => resolve()))
  assert.equal(rec.signalCode, 'SIGKILL')

  const recLines: Array<[number, number]> = []
  for (const line of out.split('\n')) {
    const [kind, a, b] = line.split(' ')
    if (kind === 'rec') recLines.push([Number(a), Number(b)])
    if (kind === 'sealed' && a !== undefined) sealedIds.push(a)
  }
  const [lastTime, recorded] = recLines.at(-1)!
  assert.ok(sealedIds.length >= 3)

  // 2. Receiver up; a new process on the same file delivers the outbox.
  const receiver = await Receiver.start()
  t.after(() => receiver.close())
  const recovery = spawn(process.execPath, ['--import', 'tsx', child, 'recover', db, receiver.url], { stdio: ['ignore', 'pipe', 'inherit'] })
  let recoveryOut = ''
  recovery.stdout.on('data', (c: Buffer) => { recoveryOut += c.toString() })
  const code = await new Promise<number | null>((resolve) => recovery.on('close', resolve))
  assert.equal(code, 0)
  assert.match(recoveryOut, /done/)

  // Every report sealed before the kill arrives, in order, exactly once.
  const accepted = receiver.accepted.map((r) => String(r.headers['idempotency-key']))
  assert.equal(new Set(accepted).size, accepted.length, 'no report delivered twice')
  assert.deepEqual(accepted.slice(0, sealedIds.length), sealedIds)
  assert.ok(accepted.length <= sealedIds.length + 1, 'at most one final report from the recovery seal')

  // Conservation: nothing is invented; what is lost is at most the bytes
  // recorded in the last flush interval before the kill.
  let delivered = 0
  for (const bytes of receiver.totals().values()) delivered += bytes
  assert.ok(delivered <= recorded, `delivered ${delivered} > recorded ${recorded}`)
  const lastInterval = recorded - (recLines.findLast(([time]) => time <= lastTime - FLUSH_MS - TIMER_SLACK_MS)?.[1] ?? 0)
  t.diagnostic(`sealed before kill: ${sealedIds.length} reports; recorded ${recorded} B, delivered ${delivered} B, lost ${recorded - delivered} B (bound: ${lastInterval} B)`)
  assert.ok(recorded - delivered <= lastInterval,
    `lost ${recorded - delivered} bytes, more than the ${lastInterval} recorded in the last flush interval`)
})
