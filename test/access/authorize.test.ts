import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Authorizer } from '../../src/server/access/authorize.ts'
import type { AccessRequest, Denial, Identity } from '../../src/server/access/authorize.ts'
import { ClientIpResolver } from '../../src/server/access/client-ip.ts'
import { signedQuery } from '../../src/server/access/url-signer.ts'

const SECRET = 'a-secret-of-the-test'
const NOW = 1_800_000_000_000

/** Modes 1 and 2, and every mode without sessions or grants, answer at once. */
function decide (authorizer: Authorizer, request: AccessRequest): Identity | Denial {
  const who = authorizer.authorize(request)
  assert.ok(!(who instanceof Promise), 'answered at once')
  return who
}

function ask (target: string, headers: AccessRequest['headers'] = {}, peer = '10.0.0.9'): AccessRequest {
  const [path = '', query = ''] = target.split('?')
  return { path, query: new URLSearchParams(query), headers, peer }
}

describe('Authorizer: the one access check both engines use', () => {
  const signed = new Authorizer({ signingSecret: SECRET, ips: new ClientIpResolver(['10.0.0.0/8']), now: () => NOW })

  it('a signed URL gives its uid, expiry, scope, session and client IP', () => {
    const expires = NOW / 1000 + 60
    const who = decide(signed, ask(`v/seg.ts?${signedQuery({ secret: SECRET, uid: 'u1', path: 'v/seg.ts', expires, sid: 's-1' })}`,
      { 'x-forwarded-for': '203.0.113.7' }))
    assert.deepEqual(who, { kind: 'allowed', uid: 'u1', expires, scope: '/v/', ipBinding: undefined, sessionId: 's-1', session: undefined, ip: '203.0.113.7' })
  })

  it('denials are values, never throws: bad token 403, expired 410, uid too long 400', () => {
    const expires = NOW / 1000 - 1
    const cases: Array<[string, number, string]> = [
      ['v/seg.ts?uid=u1&expires=1900000000&token=00', 403, 'SM_ERR_BAD_SIGNATURE'],
      [`v/seg.ts?${signedQuery({ secret: SECRET, uid: 'u1', path: 'v/seg.ts', expires })}`, 410, 'SM_ERR_URL_EXPIRED'],
      [`v/seg.ts?uid=${'x'.repeat(257)}`, 400, 'SM_ERR_BAD_REQUEST']
    ]
    for (const [target, status, code] of cases) {
      const who = decide(signed, ask(target))
      assert.equal(who.kind, 'denied', target)
      if (who.kind === 'denied') {
        assert.equal(who.error.statusCode, status)
        assert.equal(who.error.code, code)
      }
    }
  })

  it('without a secret the uid is trusted and nothing is scoped', () => {
    const open = new Authorizer({ signingSecret: undefined, ips: new ClientIpResolver(), now: () => NOW })
    assert.deepEqual(decide(open, ask('a.ts?uid=dev&expires=123', { 'x-forwarded-for': '203.0.113.7' })),
      { kind: 'allowed', uid: 'dev', expires: 123, scope: undefined, ipBinding: undefined, sessionId: undefined, session: undefined, ip: '10.0.0.9' })
  })

  it('an allowed network (ACCESS_ALLOW_CIDRS) comes first: no token looked at, its uid parameter believed', () => {
    const allowing = new Authorizer({
      signingSecret: SECRET,
      allowedNetworks: ['203.0.113.0/24', '2001:db8::/32', '::ffff:198.51.100.7'],
      ips: new ClientIpResolver(['10.0.0.0/8']),
      now: () => NOW
    })
    const fromNet = (target: string, client: string): Identity | Denial => decide(allowing, ask(target, { 'x-forwarded-for': client }))
    // A bad token, an expired one and none at all: allowed from the network, under the uid parameter.
    const expired = signedQuery({ secret: SECRET, uid: 'u1', path: 'v/seg.ts', expires: NOW / 1000 - 1 })
    for (const target of ['v/seg.ts?uid=cdn&expires=1900000000&token=00', `v/seg.ts?${expired}`, 'v/seg.ts?uid=cdn', 'v/seg.ts']) {
      const who = fromNet(target, '203.0.113.200')
      assert.equal(who.kind, 'allowed', target)
      if (who.kind === 'allowed') {
        assert.equal(who.uid, new URLSearchParams(target.split('?')[1]).get('uid') ?? undefined, target)
        assert.equal(who.scope, undefined, 'nothing signed: a rewritten playlist signs no child')
        assert.equal(who.ip, '203.0.113.200')
      }
    }
    assert.equal(fromNet('v/seg.ts?uid=cdn', '2001:db8:1::5').kind, 'allowed')
    assert.equal(fromNet('v/seg.ts?uid=cdn', '198.51.100.7').kind, 'allowed', 'an IPv4-mapped entry covers its IPv4 address')
    // Outside the networks, the signed-URL rules as before.
    for (const client of ['198.51.100.8', '203.0.114.1', '2001:db9::1']) {
      const who = fromNet('v/seg.ts?uid=cdn', client)
      assert.equal(who.kind, 'denied', client)
    }
    // The socket peer counts only through TRUSTED_PROXIES: a client outside them cannot claim a network.
    const spoofed = decide(allowing, ask('v/seg.ts?uid=cdn', { 'x-forwarded-for': '203.0.113.7' }, '192.0.2.50'))
    assert.equal(spoofed.kind, 'denied')
    // The uid's length is checked first, whatever the network.
    const long = fromNet(`v/seg.ts?uid=${'x'.repeat(257)}`, '203.0.113.7')
    assert.equal(long.kind === 'denied' ? long.error.statusCode : 200, 400)
  })

  it('with ACCESS_API_KEY and no secret, an unsigned uid grants nothing; an allowed network still passes', () => {
    const locked = new Authorizer({ signingSecret: undefined, locked: true, allowedNetworks: ['203.0.113.0/24'], ips: new ClientIpResolver(), now: () => NOW })
    const refused = decide(locked, ask('v/seg.ts?uid=dev'))
    assert.equal(refused.kind === 'denied' ? refused.error.code : 'allowed', 'SM_ERR_BAD_SIGNATURE')
    assert.equal(decide(locked, ask('v/seg.ts?uid=dev', {}, '203.0.113.1')).kind, 'allowed')
  })

  it('an IP-bound signed URL: allowed from its block only, and its binding carried for the children', () => {
    const expires = NOW / 1000 + 60
    const target = `v/seg.ts?${signedQuery({ secret: SECRET, uid: 'u1', path: 'v/seg.ts', expires, ip: '203.0.113.0/24' })}`
    const who = decide(signed, ask(target, { 'x-forwarded-for': '203.0.113.7' }))
    assert.equal(who.kind === 'allowed' ? who.ipBinding : who.error.code, '203.0.113.0/24')
    const elsewhere = decide(signed, ask(target, { 'x-forwarded-for': '198.51.100.7' }))
    assert.equal(elsewhere.kind === 'denied' ? elsewhere.error.code : 'allowed', 'SM_ERR_BAD_SIGNATURE')
    // The peer itself is the client when it is no trusted proxy.
    assert.equal(decide(signed, ask(target, {}, '203.0.113.9')).kind, 'allowed')
  })

  it('an open extension (ACCESS_OPEN_EXTENSIONS) comes last: served unmetered when nothing else lets the request in', () => {
    const opening = new Authorizer({ signingSecret: SECRET, openExtensions: ['ts'], ips: new ClientIpResolver(), now: () => NOW })
    const expires = NOW / 1000 + 60
    const signedSeg = decide(opening, ask(`v/seg.ts?${signedQuery({ secret: SECRET, uid: 'u1', path: 'v/seg.ts', expires })}`))
    assert.equal(signedSeg.kind === 'allowed' ? signedSeg.uid : 'denied', 'u1', 'a valid signature still bills its uid')
    for (const target of ['v/seg.ts', 'v/SEG.TS?uid=claimed', 'v/a.b.ts?uid=u1&expires=1900000000&token=00']) {
      const who = decide(opening, ask(target))
      assert.equal(who.kind, 'allowed', target)
      assert.equal(who.kind === 'allowed' ? who.uid : 'x', undefined, `${target}: not metered, the uid parameter not believed`)
    }
    for (const target of ['v/seg.m4s', 'v/ts', 'v/seg.ts.m3u8', 'v.ts/index.m3u8']) assert.equal(decide(opening, ask(target)).kind, 'denied', target)
    const long = decide(opening, ask(`v/seg.ts?uid=${'x'.repeat(257)}`))
    assert.equal(long.kind === 'denied' ? long.error.statusCode : 200, 400)
  })

  it('a network matches clients of its own family only, as nginx\'s geo and realip do', () => {
    const only6 = new Authorizer({ signingSecret: SECRET, allowedNetworks: ['::/0'], ips: new ClientIpResolver(), now: () => NOW })
    const only4 = new Authorizer({ signingSecret: SECRET, allowedNetworks: ['0.0.0.0/0'], ips: new ClientIpResolver(), now: () => NOW })
    assert.equal(decide(only6, ask('v/seg.ts?uid=a', {}, '2001:db8::1')).kind, 'allowed')
    assert.equal(decide(only6, ask('v/seg.ts?uid=a', {}, '203.0.113.1')).kind, 'denied', 'Node\'s BlockList alone would match')
    assert.equal(decide(only6, ask('v/seg.ts?uid=a', {}, '::ffff:203.0.113.1')).kind, 'denied', 'an IPv4-mapped peer is IPv4')
    assert.equal(decide(only4, ask('v/seg.ts?uid=a', {}, '::ffff:203.0.113.1')).kind, 'allowed')
    assert.equal(decide(only4, ask('v/seg.ts?uid=a', {}, '2001:db8::1')).kind, 'denied')
    assert.equal(new ClientIpResolver(['::/0']).isTrusted('203.0.113.1'), false)
  })

  it('an ACCESS_ALLOW_CIDRS entry that is no address or block is a configuration error', () => {
    assert.throws(() => new Authorizer({ signingSecret: SECRET, allowedNetworks: ['10.0.0.0/33'], ips: new ClientIpResolver(), now: () => NOW }),
      (err: Error & { code?: string }) => err.code === 'SM_ERR_CONFIG' && err.message.includes('ACCESS_ALLOW_CIDRS'))
  })
})
