import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { DeltaMap, fileTypeIndex } from '../../src/meter/index.ts'

describe('delta map (the hot path)', () => {
  it('accumulates per uid: bytes, requests, file types, capped IPs and sessions, first and last time', () => {
    const m = new DeltaMap(3, 2)
    m.add('u', 100, fileTypeIndex('ts'), '1', 'a', 50)
    m.add('u', 10, fileTypeIndex('ts'), '1', 'a', 40)
    m.add('u', 5, fileTypeIndex('m3u8'), '2', 'b', 60)
    for (const ip of ['3', '4', '2', '5']) m.add('u', 1, fileTypeIndex('weird'), ip, 'c', 55)
    m.add('v', 7, fileTypeIndex('key'), undefined, undefined, 1)
    assert.equal(m.size, 2)
    const [u, v] = m.drain()
    assert.deepEqual(u, {
      uid: 'u',
      bytes: 119,
      requests: 7,
      fileTypes: { ts: 110, m3u8: 5, default: 4 },
      ips: ['1', '2', '3'],
      sessions: ['a', 'b'],
      firstSeen: 40,
      lastSeen: 60
    })
    assert.deepEqual(v, { uid: 'v', bytes: 7, requests: 1, fileTypes: { key: 7 }, ips: [], sessions: [], firstSeen: 1, lastSeen: 1 })
    assert.equal(m.size, 0)
    assert.deepEqual(m.drain(), [])
  })

  it('grows past its initial capacity and gives memory back after a burst', () => {
    const m = new DeltaMap(20, 10)
    for (let i = 0; i < 10_000; i++) m.add(`u${i}`, i + 1, 1, undefined, undefined, i)
    const all = m.drain()
    assert.equal(all.length, 10_000)
    assert.equal(all.reduce((s, d) => s + d.bytes, 0), 10_000 * 10_001 / 2)
    m.add('x', 1, 1, undefined, undefined, 0)
    assert.deepEqual(m.drain().map((d) => d.uid), ['x'])
  })
})
