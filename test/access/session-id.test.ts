import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { cookieValue, MAX_SESSION_ID_LENGTH, sessionIdOf } from '../../src/server/access/session-id.ts'

describe('session id: precedence', () => {
  const cookie = 'theme=dark; session_id_fileserver=from-cookie'

  it('takes the X-Session-ID header, else the cookie, else the sid parameter', () => {
    assert.equal(sessionIdOf({ 'x-session-id': 'from-header', cookie }, 'from-query'), 'from-header')
    assert.equal(sessionIdOf({ cookie }, 'from-query'), 'from-cookie')
    assert.equal(sessionIdOf({}, 'from-query'), 'from-query')
    assert.equal(sessionIdOf({ cookie: 'theme=dark' }, undefined), undefined)
    assert.equal(sessionIdOf({}, undefined), undefined)
  })

  it('trims, and treats an empty, too long or control-character value as absent (next source)', () => {
    assert.equal(sessionIdOf({ 'x-session-id': '  abc \t' }, undefined), 'abc')
    assert.equal(sessionIdOf({ 'x-session-id': 'a b' }, undefined), 'a b')
    assert.equal(sessionIdOf({ 'x-session-id': '   ', cookie }, undefined), 'from-cookie')
    assert.equal(sessionIdOf({ 'x-session-id': 'bad\u0000id', cookie }, undefined), 'from-cookie')
    assert.equal(sessionIdOf({ 'x-session-id': 'bad\u001bid' }, 'q'), 'q')
    assert.equal(sessionIdOf({ 'x-session-id': 'bad\u007fid' }, 'q'), 'q')
    assert.equal(sessionIdOf({ cookie: 'session_id_fileserver=' }, 'q'), 'q')
    assert.equal(sessionIdOf({ cookie: 'session_id_fileserver=a\u0001' }, 'q'), 'q')
    assert.equal(sessionIdOf({}, '\r\n'), undefined)
    assert.equal(sessionIdOf({}, 'x\ny'), undefined)
  })

  it(`keeps ids up to ${MAX_SESSION_ID_LENGTH} characters and rejects longer ones rather than truncating`, () => {
    const max = 's'.repeat(MAX_SESSION_ID_LENGTH)
    assert.equal(sessionIdOf({ 'x-session-id': max }, undefined), max)
    assert.equal(sessionIdOf({ 'x-session-id': ` ${max} ` }, undefined), max) // length counted after trimming
    assert.equal(sessionIdOf({ 'x-session-id': `${max}x` }, 'short'), 'short')
    assert.equal(sessionIdOf({ cookie: `session_id_fileserver=${max}x` }, undefined), undefined)
    assert.equal(sessionIdOf({}, `${max}x`), undefined)
  })

  it('reads the first of repeated headers', () => {
    assert.equal(sessionIdOf({ 'x-session-id': ['one', 'two'] as unknown as string }, undefined), 'one')
  })
})

describe('session id: Cookie header parsing (RFC 6265 §4.2.1, leniently)', () => {
  const name = 'session_id_fileserver'

  it('finds the cookie among others, with or without spaces', () => {
    assert.equal(cookieValue('session_id_fileserver=abc', name), 'abc')
    assert.equal(cookieValue('a=1; session_id_fileserver=abc; b=2', name), 'abc')
    assert.equal(cookieValue('a=1;session_id_fileserver=abc;b=2', name), 'abc')
    assert.equal(cookieValue('  a=1 ;  session_id_fileserver = abc  ; b=2', name), 'abc')
  })

  it('matches the whole name, case-sensitively', () => {
    assert.equal(cookieValue('xsession_id_fileserver=1; session_id_fileserver2=2; SESSION_ID_FILESERVER=3', name), undefined)
    assert.equal(cookieValue('Session_id_fileserver=3; session_id_fileserver=4', name), '4')
  })

  it('keeps "=" inside the value and strips one pair of double quotes, decoding nothing', () => {
    assert.equal(cookieValue('session_id_fileserver=YWJj==', name), 'YWJj==')
    assert.equal(cookieValue('session_id_fileserver="quoted value"', name), 'quoted value')
    assert.equal(cookieValue('session_id_fileserver="', name), '"')
    assert.equal(cookieValue('session_id_fileserver=a%20b', name), 'a%20b')
  })

  it('skips empty pairs and pairs without "=", and the first of repeated names wins', () => {
    assert.equal(cookieValue(';; session_id_fileserver; flag; session_id_fileserver=x', name), 'x')
    assert.equal(cookieValue('session_id_fileserver=first; session_id_fileserver=second', name), 'first')
    assert.equal(cookieValue('', name), undefined)
    assert.equal(cookieValue(undefined, name), undefined)
  })

  it('reads several Cookie headers (HTTP/2 may split it) as one', () => {
    assert.equal(cookieValue(['a=1', 'session_id_fileserver=y'], name), 'y')
  })

  it('feeds sessionIdOf: an empty cookie value falls through to sid', () => {
    assert.equal(sessionIdOf({ cookie: 'session_id_fileserver=""' }, 'q'), 'q')
    assert.equal(sessionIdOf({ cookie: 'session_id_fileserver=" padded "' }, undefined), 'padded')
  })
})
