import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { DeniedLog } from '../../src/server/access/denials.ts'

describe('DeniedLog: the recent denials and the counts by reason', () => {
  it('keeps the newest `size` entries, newest first, and counts every denial', () => {
    const told: string[] = []
    const log = new DeniedLog({ size: 3, onDenial: (r) => told.push(r) })
    const reasons = ['bad_signature', 'expired', 'ip_mismatch', 'bad_signature', 'uid_too_long'] as const
    reasons.forEach((reason, i) => { log.add({ reason, status: 403, path: `/p${i}.ts`, ip: '10.0.0.1', time: Date.UTC(2026, 0, 1, 0, 0, i) }) })
    assert.deepEqual(log.recent().map((d) => d.path), ['/p4.ts', '/p3.ts', '/p2.ts'])
    assert.deepEqual(log.recent(2).map((d) => d.path), ['/p4.ts', '/p3.ts'])
    assert.deepEqual(log.recent(0), [])
    assert.equal(log.recent()[0]?.time, '2026-01-01T00:00:04.000Z')
    assert.deepEqual(log.counts(), { bad_signature: 2, ip_mismatch: 1, expired: 1, uid_too_long: 1, uid_mismatch: 0, store_unavailable: 0, use_limit: 0 })
    assert.deepEqual(told, [...reasons])
    assert.equal(log.capacity, 3)
  })

  it('cuts a long path, and keeps only reason, status, path, client IP and time', () => {
    const log = new DeniedLog()
    log.add({ reason: 'expired', status: 410, path: `/${'a'.repeat(1000)}`, ip: '2001:db8::1', time: 0 })
    const [entry] = log.recent()
    assert.equal(entry?.path.length, 257)
    assert.ok(entry?.path.endsWith('…'))
    assert.deepEqual(Object.keys(entry ?? {}).sort(), ['ip', 'path', 'reason', 'status', 'time'])
  })
})
