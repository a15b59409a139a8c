import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Authorizer } from '../../src/server/access/authorize.ts'
import type { AccessRequest } from '../../src/server/access/authorize.ts'
import { ClientIpResolver } from '../../src/server/access/client-ip.ts'
import { signedQuery } from '../../src/server/access/url-signer.ts'

const SECRET = 'a-secret-of-the-test'
const NOW = 1_800_000_000_000

function ask (target: string, headers: AccessRequest['headers'] = {}, peer = '10.0.0.9'): AccessRequest {
  const [path = '', query = ''] = target.split('?')
  return { path, query: new URLSearchParams(query), headers, peer }
}

describe('Authorizer: the one access check both engines use', () => {
  const signed = new Authorizer({ signingSecret: SECRET, ips: new ClientIpResolver(['10.0.0.0/8']), now: () => NOW })

  it('a signed URL gives its uid, expiry, scope, session and client IP', () => {
    const expires = NOW / 1000 + 60
    const who = signed.authorize(ask(`v/seg.ts?${signedQuery({ secret: SECRET, uid: 'u1', path: 'v/seg.ts', expires, sid: 's-1' })}`,
      { 'x-forwarded-for': '203.0.113.7' }))
    assert.deepEqual(who, { kind: 'allowed', uid: 'u1', expires, scope: '/v/', sessionId: 's-1', ip: '203.0.113.7' })
  })

  it('denials are values, never throws: bad token 403, expired 410, uid too long 400', () => {
    const expires = NOW / 1000 - 1
    const cases: Array<[string, number, string]> = [
      ['v/seg.ts?uid=u1&expires=1900000000&token=00', 403, 'SM_ERR_BAD_SIGNATURE'],
      [`v/seg.ts?${signedQuery({ secret: SECRET, uid: 'u1', path: 'v/seg.ts', expires })}`, 410, 'SM_ERR_URL_EXPIRED'],
      [`v/seg.ts?uid=${'x'.repeat(257)}`, 400, 'SM_ERR_BAD_REQUEST']
    ]
    for (const [target, status, code] of cases) {
      const who = signed.authorize(ask(target))
      assert.equal(who.kind, 'denied', target)
      if (who.kind === 'denied') {
        assert.equal(who.error.statusCode, status)
        assert.equal(who.error.code, code)
      }
    }
  })

  it('without a secret the uid is trusted and nothing is scoped', () => {
    const open = new Authorizer({ signingSecret: undefined, ips: new ClientIpResolver(), now: () => NOW })
    assert.deepEqual(open.authorize(ask('a.ts?uid=dev&expires=123', { 'x-forwarded-for': '203.0.113.7' })),
      { kind: 'allowed', uid: 'dev', expires: 123, scope: undefined, sessionId: undefined, ip: '10.0.0.9' })
  })
})
