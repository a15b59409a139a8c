import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  formatContentRange, formatUnsatisfiedRange, ifRangeMatches, isMultiRange, isNotModified, parseContentRange, parseRange
} from '../../src/server/origin/byte-range.ts'
import type { RangeRequest } from '../../src/server/origin/byte-range.ts'

const none: RangeRequest = { kind: 'none' }
const unsatisfiable: RangeRequest = { kind: 'unsatisfiable' }
const range = (start: number, end: number): RangeRequest => ({ kind: 'range', start, end })

describe('parseRange (RFC 9110 §14)', () => {
  const cases: Array<[string | undefined, number, RangeRequest]> = [
    [undefined, 1000, none],
    ['bytes=0-99', 1000, range(0, 99)],
    ['bytes=100-', 1000, range(100, 999)],
    ['bytes=-100', 1000, range(900, 999)],
    ['bytes=0-0', 1000, range(0, 0)],
    ['bytes=999-999', 1000, range(999, 999)],
    ['bytes=900-5000', 1000, range(900, 999)], // last-pos clamped
    ['bytes=-5000', 1000, range(0, 999)], // suffix longer than the file: all of it
    ['bytes=0-', 1000, range(0, 999)],
    ['Bytes=0-9', 1000, range(0, 9)], // the unit is case-insensitive
    ['bytes=0-9, ', 1000, range(0, 9)], // empty list elements are ignored
    [' bytes = 5-9 ', 1000, range(5, 9)],
    ['bytes=1000-', 1000, unsatisfiable],
    ['bytes=1000-2000', 1000, unsatisfiable],
    ['bytes=-0', 1000, unsatisfiable],
    ['bytes=0-', 0, unsatisfiable],
    ['bytes=-5', 0, none], // satisfiable in theory, but an empty range has no Content-Range
    ['bytes=99999999999999999999-', 1000, unsatisfiable],
    ['bytes=0-99999999999999999999', 1000, range(0, 999)],
    ['bytes=0-99,200-299', 1000, none], // multiple ranges: served in full
    ['bytes=0-1,0-1,0-1', 1000, none],
    ['bytes=9-5', 1000, none], // first > last: invalid, ignored
    ['bytes=abc', 1000, none],
    ['bytes=1-2-3', 1000, none],
    ['bytes=-', 1000, none],
    ['bytes=', 1000, none],
    ['bytes=+1-2', 1000, none],
    ['bytes=0x10-', 1000, none],
    ['items=0-9', 1000, none],
    ['0-9', 1000, none]
  ]
  for (const [header, size, expected] of cases) {
    it(`${JSON.stringify(header)} of ${size} bytes → ${JSON.stringify(expected)}`, () => {
      assert.deepEqual(parseRange(header, size), expected)
    })
  }

  it('isMultiRange tells one range from several', () => {
    assert.equal(isMultiRange('bytes=0-1'), false)
    assert.equal(isMultiRange('bytes=0-1,'), false)
    assert.equal(isMultiRange('bytes=0-1, 5-6'), true)
    assert.equal(isMultiRange(undefined), false)
    assert.equal(isMultiRange('items=0-1,2-3'), false)
  })
})

describe('Content-Range', () => {
  it('formats', () => {
    assert.equal(formatContentRange(0, 99, 1000), 'bytes 0-99/1000')
    assert.equal(formatUnsatisfiedRange(1000), 'bytes */1000')
  })
  it('parses', () => {
    assert.deepEqual(parseContentRange('bytes 0-99/1000'), { kind: 'range', start: 0, end: 99, size: 1000 })
    assert.deepEqual(parseContentRange('bytes 0-99/*'), { kind: 'range', start: 0, end: 99, size: undefined })
    assert.deepEqual(parseContentRange('bytes */1000'), { kind: 'unsatisfied', size: 1000 })
    assert.equal(parseContentRange('bytes 5-1/1000'), undefined)
    assert.equal(parseContentRange('bytes 0-1000/1000'), undefined)
    assert.equal(parseContentRange('bytes */abc'), undefined)
    assert.equal(parseContentRange(undefined), undefined)
  })
})

describe('isNotModified (RFC 9110 §13.1.2, §13.1.3)', () => {
  const mtime = Date.UTC(2024, 0, 2, 3, 4, 5, 678)
  const current = { etag: '"abc-123"', lastModified: mtime }
  const cases: Array<[string, { ifNoneMatch?: string, ifModifiedSince?: string }, boolean]> = [
    ['no conditionals', {}, false],
    ['same tag', { ifNoneMatch: '"abc-123"' }, true],
    ['weak comparison: W/ on the request', { ifNoneMatch: 'W/"abc-123"' }, true],
    ['one of a list', { ifNoneMatch: '"x", "abc-123"' }, true],
    ['a tag with a comma in it', { ifNoneMatch: '"a,b", "abc-123"' }, true],
    ['other tag', { ifNoneMatch: '"abc-124"' }, false],
    ['unquoted garbage', { ifNoneMatch: 'abc-123' }, false],
    ['*', { ifNoneMatch: '*' }, true],
    ['IMS equal to the second', { ifModifiedSince: new Date(mtime).toUTCString() }, true],
    ['IMS later', { ifModifiedSince: new Date(mtime + 60_000).toUTCString() }, true],
    ['IMS earlier', { ifModifiedSince: new Date(mtime - 1000).toUTCString() }, false],
    ['IMS in the obsolete RFC 850 form', { ifModifiedSince: 'Tuesday, 02-Jan-24 03:04:05 GMT' }, true],
    ['IMS in the obsolete asctime form', { ifModifiedSince: 'Tue Jan  2 03:04:05 2024' }, true],
    ['IMS asctime a second early', { ifModifiedSince: 'Tue Jan  2 03:04:04 2024' }, false],
    ['IMS without its GMT', { ifModifiedSince: 'Tue, 02 Jan 2024 03:04:05' }, false],
    ['IMS not a date', { ifModifiedSince: 'yesterday' }, false],
    ['IMS a bare number', { ifModifiedSince: '1704164645' }, false],
    ['If-None-Match wins over IMS (no match)', { ifNoneMatch: '"other"', ifModifiedSince: new Date(mtime + 60_000).toUTCString() }, false],
    ['If-None-Match wins over IMS (match)', { ifNoneMatch: '"abc-123"', ifModifiedSince: new Date(0).toUTCString() }, true]
  ]
  for (const [what, conditionals, expected] of cases) {
    it(what, () => {
      assert.equal(isNotModified(conditionals, current), expected)
    })
  }
  it('a representation without an ETag never matches a tag', () => {
    assert.equal(isNotModified({ ifNoneMatch: '"abc-123"' }, { lastModified: mtime }), false)
  })
})

describe('ifRangeMatches (RFC 9110 §13.1.5)', () => {
  const mtime = Date.UTC(2024, 0, 2, 3, 4, 5, 678)
  const later = mtime + 3_600_000
  const date = new Date(mtime).toUTCString()
  it('no If-Range: the range applies', () => assert.equal(ifRangeMatches(undefined, '"a"', mtime, later), true))
  it('same strong tag', () => assert.equal(ifRangeMatches('"a"', '"a"', mtime, later), true))
  it('other tag', () => assert.equal(ifRangeMatches('"b"', '"a"', mtime, later), false))
  it('weak tag in If-Range never matches', () => assert.equal(ifRangeMatches('W/"a"', '"a"', mtime, later), false))
  it('weak current tag never matches', () => assert.equal(ifRangeMatches('"a"', 'W/"a"', mtime, later), false))
  it('exact date', () => assert.equal(ifRangeMatches(date, '"a"', mtime, later), true))
  it('other date', () => assert.equal(ifRangeMatches(new Date(mtime + 1000).toUTCString(), '"a"', mtime, later), false))
  it('date of a file modified within the current second is weak', () => {
    assert.equal(ifRangeMatches(date, '"a"', mtime, mtime + 100), false)
  })
  it('garbage', () => assert.equal(ifRangeMatches('nonsense', '"a"', mtime, later), false))
})
