import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import {
  GENERATION_SPAN, MAX_GENERATION, encodePosition, generationOf, offsetOf, rotatedGenerations
} from '../../src/server/nginx/log-rotation.ts'

describe('a log position holds a generation and an offset', () => {
  it('round-trips generation and offset, and a plain offset is generation 0', () => {
    for (const [g, o] of [[0, 0], [0, 1234], [1, 0], [7, GENERATION_SPAN - 1], [MAX_GENERATION, GENERATION_SPAN - 1]] as const) {
      const p = encodePosition(g, o)
      assert.ok(Number.isSafeInteger(p))
      assert.equal(generationOf(p), g)
      assert.equal(offsetOf(p), o)
    }
    // A position committed before rotation existed means the same bytes.
    assert.equal(encodePosition(0, 987_654), 987_654)
    assert.equal(encodePosition(MAX_GENERATION, GENERATION_SPAN - 1), Number.MAX_SAFE_INTEGER)
    // Positions of a later generation are greater than any of an earlier one.
    assert.ok(encodePosition(3, 0) > encodePosition(2, GENERATION_SPAN - 1))
  })

  it('refuses an offset of 4 GiB or more and a generation past the safe range', () => {
    assert.throws(() => encodePosition(0, GENERATION_SPAN), RangeError)
    assert.throws(() => encodePosition(0, -1), RangeError)
    assert.throws(() => encodePosition(MAX_GENERATION + 1, 0), RangeError)
    assert.throws(() => encodePosition(1.5, 0), RangeError)
  })

  it('lists the rotated generations on disk, ascending, and nothing that is not one', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sm-log-gens-'))
    t.after(() => rmSync(dir, { recursive: true, force: true }))
    for (const name of ['access.log', 'access.log.10', 'access.log.2', 'access.log.0', 'access.log.1.gz', 'access.log.03', 'access.log.x', 'other.log.4']) {
      writeFileSync(join(dir, name), '')
    }
    assert.deepEqual(rotatedGenerations(join(dir, 'access.log')), [0, 2, 10])
    assert.deepEqual(rotatedGenerations(join(dir, 'gone', 'access.log')), [])
  })
})
