import assert from 'node:assert/strict'
import crypto, { createHmac } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { syncBuiltinESMExports } from 'node:module'
import { describe, it, mock } from 'node:test'
import {
  checkSignedRequest, directoryOf, inScope, ipBinding, isScope, signIpBoundToken, signScopedToken, signedQuery, signToken, verifyToken
} from '../../src/server/access/url-signer.ts'

const SECRET = 'demo-secret'
const UID = 'user-42'
const PATH = 'hls/v1/index.m3u8'
const EXPIRES = 1_700_000_000

function hmac (secret: string, message: string): Buffer {
  return createHmac('sha256', secret).update(message).digest()
}

/** A token's base64url spelling whose two padding bits are not zero: same bytes, other text. */
function nonCanonical (b64: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  const last = alphabet.indexOf(b64.at(-1)!)
  return b64.slice(0, -1) + alphabet[last | 1]
}

describe('url signer: tokens', () => {
  it('matches known answers (computed with openssl, and with node:crypto over "uid:path:expires")', () => {
    // printf 'user-42:hls/v1/index.m3u8:1700000000' | openssl dgst -sha256 -hmac demo-secret
    assert.equal(signToken(SECRET, UID, PATH, EXPIRES), '0dfd28bd858ac5d4ef34ea4ff73da0c737ce0fb96d553f324e857c2bb75e4138')
    // UTF-8 in uid and path (the path is signed URL-decoded): printf 'ü:ordner/ä b.ts:0' | openssl …
    assert.equal(signToken('s', 'ü', 'ordner/ä b.ts', 0), '90191e96d72dfca8492c35ce9d54b440b54dd1b441057b5722babf7db96f33c6')
    for (const [uid, path, expires] of [['a', 'x.ts', 1], ['user@example.com', 'p/q:r/s.m4s', 4_102_444_800], ['42', 'enc/enc.key', 0]] as const) {
      assert.equal(signToken('k', uid, path, expires), hmac('k', `${uid}:${path}:${expires}`).toString('hex'))
    }
  })

  it('verifies the lowercase hex and the unpadded base64url spelling of the same token', () => {
    const mac = hmac(SECRET, `${UID}:${PATH}:${EXPIRES}`)
    assert.equal(mac.toString('base64url'), 'Df0ovYWKxdTvNOpP9z2gxzfOD7ltVT8yToV8K7deQTg')
    assert.equal(verifyToken(SECRET, UID, PATH, EXPIRES, mac.toString('hex')), true)
    assert.equal(verifyToken(SECRET, UID, PATH, EXPIRES, mac.toString('base64url')), true)
    assert.equal(verifyToken(SECRET, UID, PATH, String(EXPIRES), mac.toString('base64url')), true)
  })

  it('fails for a different secret, uid, path or expires', () => {
    const token = signToken(SECRET, UID, PATH, EXPIRES)
    assert.equal(verifyToken('other-secret', UID, PATH, EXPIRES, token), false)
    assert.equal(verifyToken(SECRET, 'user-43', PATH, EXPIRES, token), false)
    assert.equal(verifyToken(SECRET, UID, 'hls/v1/seg000.ts', EXPIRES, token), false)
    assert.equal(verifyToken(SECRET, UID, `/${PATH}`, EXPIRES, token), false)
    assert.equal(verifyToken(SECRET, UID, PATH, EXPIRES + 1, token), false)
    // The expires string is signed as written: a zero-padded copy is another message.
    assert.equal(verifyToken(SECRET, UID, PATH, `0${EXPIRES}`, token), false)
  })

  it('answers false, without throwing, for malformed tokens', () => {
    const mac = hmac(SECRET, `${UID}:${PATH}:${EXPIRES}`)
    const hex = mac.toString('hex')
    const b64 = mac.toString('base64url')
    const malformed = [
      '', 'x', hex.slice(0, 63), `${hex}0`, hex.toUpperCase(), `${hex.slice(0, 63)}g`, ` ${hex.slice(1)}`,
      `${b64}=`, mac.toString('base64'), b64.slice(0, 42), `${b64}A`, `${b64.slice(0, 42)}+`,
      nonCanonical(b64), '\u0000'.repeat(64), 'é'.repeat(43), '0'.repeat(64), 'A'.repeat(43)
    ]
    for (const token of malformed) {
      assert.equal(verifyToken(SECRET, UID, PATH, EXPIRES, token), false, JSON.stringify(token))
    }
    // The non-canonical spelling decodes to the very same bytes: refused for its spelling alone.
    assert.deepEqual(Buffer.from(nonCanonical(b64), 'base64url'), mac)
  })

  it('compares with crypto.timingSafeEqual on two 32-byte buffers', (t) => {
    const spy = mock.method(crypto, 'timingSafeEqual')
    syncBuiltinESMExports() // re-points `import { timingSafeEqual }` at the spy
    t.after(() => { spy.mock.restore(); syncBuiltinESMExports() })
    const token = signToken(SECRET, UID, PATH, EXPIRES)
    assert.equal(verifyToken(SECRET, UID, PATH, EXPIRES, token), true)
    assert.equal(verifyToken(SECRET, UID, PATH, EXPIRES, `${token.slice(0, 63)}0`), false)
    assert.equal(spy.mock.callCount(), 2)
    for (const call of spy.mock.calls) {
      const [a, b] = call.arguments as [Buffer, Buffer]
      assert.equal(a.length, 32)
      assert.equal(b.length, 32)
    }
  })

  it('never compares tokens or MACs with ===, == or Buffer#equals (source check)', () => {
    const source = readFileSync(new URL('../../src/server/access/url-signer.ts', import.meta.url), 'utf8')
      .replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '')
    assert.match(source, /timingSafeEqual\(mac\(/)
    assert.doesNotMatch(source, /\.equals\(|\.compare\(/)
    // Every equality whose one side mentions a token or MAC must have a literal
    // (a length, undefined, a typeof string) on the other side.
    const sensitive = /token|mac|presented|digest|hex|expected/i
    const literal = /^(undefined|null|'[^']*'|[0-9]+)$/
    let comparisons = 0
    for (const m of source.matchAll(/([\w.()'[\]]+)\s*([!=]==?)\s*([\w.()'[\]]+)/g)) {
      const [text, l, , r] = m as unknown as [string, string, string, string]
      const left = l.replace(/^\(+/, '')
      const right = r.replace(/\)+$/, '')
      comparisons++
      if (sensitive.test(left)) assert.match(right, literal, text)
      if (sensitive.test(right)) assert.match(left, literal, text)
    }
    assert.ok(comparisons > 5) // the scan did see the comparisons there are
  })
})

describe('url signer: checkSignedRequest', () => {
  const token = signToken(SECRET, UID, PATH, EXPIRES)
  const base = { secret: SECRET, uid: UID, path: PATH, expires: String(EXPIRES), token, now: EXPIRES - 10 }

  it('is ok before and at the expiry second, expired after it', () => {
    assert.equal(checkSignedRequest(base), 'ok')
    assert.equal(checkSignedRequest({ ...base, now: EXPIRES }), 'ok')
    assert.equal(checkSignedRequest({ ...base, now: EXPIRES + 0.5 }), 'expired')
    assert.equal(checkSignedRequest({ ...base, now: EXPIRES + 3600 }), 'expired')
    assert.equal(checkSignedRequest({ ...base, expires: EXPIRES }), 'ok')
  })

  it('is bad, not expired, for a token that does not verify, whatever its expires (403 before 410)', () => {
    const now = EXPIRES + 3600
    assert.equal(checkSignedRequest({ ...base, now, token: signToken('wrong', UID, PATH, EXPIRES) }), 'bad')
    assert.equal(checkSignedRequest({ ...base, now, uid: 'someone-else' }), 'bad')
    assert.equal(checkSignedRequest({ ...base, now, path: 'hls/v1/other.m3u8' }), 'bad')
    // Moving expires into the future without re-signing is bad, not ok.
    assert.equal(checkSignedRequest({ ...base, now, expires: String(now + 60) }), 'bad')
  })

  it('accepts the base64url spelling too', () => {
    const b64 = Buffer.from(token, 'hex').toString('base64url')
    assert.equal(checkSignedRequest({ ...base, token: b64 }), 'ok')
    assert.equal(checkSignedRequest({ ...base, token: b64, now: EXPIRES + 1 }), 'expired')
  })

  it('is bad when uid, token or expires is missing, repeated or malformed', () => {
    assert.equal(checkSignedRequest({ ...base, uid: undefined }), 'bad')
    assert.equal(checkSignedRequest({ ...base, uid: '' }), 'bad')
    assert.equal(checkSignedRequest({ ...base, token: undefined }), 'bad')
    assert.equal(checkSignedRequest({ ...base, token: '' }), 'bad')
    assert.equal(checkSignedRequest({ ...base, expires: undefined }), 'bad')
    assert.equal(checkSignedRequest({ ...base, uid: [UID, UID] }), 'bad')
    assert.equal(checkSignedRequest({ ...base, token: [token] }), 'bad')
    assert.equal(checkSignedRequest({ ...base, expires: [String(EXPIRES)] }), 'bad')
    for (const expires of ['', ' 1700000000', '1700000000.0', '1.7e9', '-1', '+1700000000', '0x6553f100', '1'.repeat(16), 'NaN']) {
      assert.equal(checkSignedRequest({ ...base, expires }), 'bad', expires)
    }
    for (const expires of [1.5, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.equal(checkSignedRequest({ ...base, expires }), 'bad', String(expires))
    }
  })

  it('refuses a uid containing ":" — the signing string could not tell uid and path apart', () => {
    // uid 'a' + path 'b:c' and uid 'a:b' + path 'c' both sign 'a:b:c:E'.
    const issued = signToken(SECRET, 'a', 'b:c', EXPIRES)
    assert.equal(checkSignedRequest({ ...base, uid: 'a', path: 'b:c', token: issued }), 'ok')
    assert.equal(hmac(SECRET, `a:b:c:${EXPIRES}`).toString('hex'), issued) // the ambiguity itself
    assert.equal(verifyToken(SECRET, 'a:b', 'c', EXPIRES, issued), false)
    assert.equal(checkSignedRequest({ ...base, uid: 'a:b', path: 'c', token: issued }), 'bad')
    // Also when the token was minted over such a uid by another tool.
    const raw = hmac(SECRET, `a:b:c:${EXPIRES}`).toString('hex')
    assert.equal(checkSignedRequest({ ...base, uid: 'a:b', path: 'c', token: raw }), 'bad')
    assert.throws(() => signToken(SECRET, 'a:b', 'c', EXPIRES), TypeError)
    assert.equal(verifyToken(SECRET, '', PATH, EXPIRES, hmac(SECRET, `:${PATH}:${EXPIRES}`).toString('hex')), false)
  })
})

describe('url signer: signToken and signedQuery arguments', () => {
  it('refuses arguments that could only give a token that never verifies', () => {
    assert.throws(() => signToken('', UID, PATH, EXPIRES), TypeError)
    assert.throws(() => signToken(SECRET, '', PATH, EXPIRES), TypeError)
    assert.throws(() => signToken(SECRET, UID, `/${PATH}`, EXPIRES), /must not start with/)
    for (const expires of [1.5, -1, Number.NaN, 2 ** 53]) {
      assert.throws(() => signToken(SECRET, UID, PATH, expires), TypeError, String(expires))
    }
    assert.throws(() => verifyToken('', UID, PATH, EXPIRES, 'x'), TypeError)
  })

  it('builds uid=…&expires=…&token=…[&sid=…], percent-encoded, that checks out', () => {
    const q = signedQuery({ secret: SECRET, uid: UID, path: PATH, expires: EXPIRES })
    assert.equal(q, `uid=user-42&expires=1700000000&token=${signToken(SECRET, UID, PATH, EXPIRES)}`)
    assert.equal(signedQuery({ secret: SECRET, uid: UID, path: PATH, expires: EXPIRES, sid: '' }), q)
    assert.equal(signedQuery({ secret: SECRET, uid: UID, path: PATH, expires: EXPIRES, sid: undefined }), q)

    const uid = 'jo doe&co=1+ü/é#?'
    const sid = 'sess 1&x=y'
    const path = 'dir/a b+c.ts'
    const q2 = signedQuery({ secret: SECRET, uid, path, expires: EXPIRES, sid })
    assert.equal(q2, `uid=jo%20doe%26co%3D1%2B%C3%BC%2F%C3%A9%23%3F&expires=1700000000&token=${signToken(SECRET, uid, path, EXPIRES)}&sid=sess%201%26x%3Dy`)
    const p = new URLSearchParams(q2)
    assert.deepEqual([...p.keys()], ['uid', 'expires', 'token', 'sid'])
    assert.equal(p.get('uid'), uid)
    assert.equal(p.get('sid'), sid)
    assert.equal(checkSignedRequest({ secret: SECRET, uid: p.get('uid')!, path, expires: p.get('expires')!, token: p.get('token')!, now: EXPIRES }), 'ok')
  })
})

describe('url signer: scoped tokens', () => {
  const scopedMessage = (uid: string, scope: string, path: string | undefined, expires: number): string =>
    `streammeter-token-v2\nuid=${uid}\nscope=${scope}\n${path === undefined ? '' : `path=${path}\n`}expires=${expires}`
  const check = (o: { uid?: string, path: string, scope?: string, token: string, now?: number }): string =>
    checkSignedRequest({ secret: SECRET, uid: o.uid ?? UID, path: o.path, expires: String(EXPIRES), token: o.token, scope: o.scope, now: o.now ?? EXPIRES })

  it('signs the documented message: a marker line, then uid, scope, path (when bound) and expires, one per line', () => {
    assert.equal(signScopedToken(SECRET, UID, '/hls/', EXPIRES, PATH), hmac(SECRET, scopedMessage(UID, '/hls/', PATH, EXPIRES)).toString('hex'))
    assert.equal(signScopedToken(SECRET, UID, '/hls/', EXPIRES), hmac(SECRET, scopedMessage(UID, '/hls/', undefined, EXPIRES)).toString('hex'))
  })

  it('bound to a path: valid for that path under that scope only', () => {
    const token = signScopedToken(SECRET, UID, '/hls/', EXPIRES, PATH)
    assert.equal(check({ path: PATH, scope: '/hls/', token }), 'ok')
    assert.equal(check({ path: PATH, scope: '/hls/', token, now: EXPIRES + 1 }), 'expired')
    assert.equal(check({ path: 'hls/v1/other.ts', scope: '/hls/', token }), 'bad')
    assert.equal(check({ path: PATH, scope: '/', token }), 'bad') // a wider scope
    assert.equal(check({ path: PATH, scope: '/hls/v1/', token }), 'bad')
    assert.equal(check({ path: PATH, token }), 'bad') // not a plain token
    assert.equal(check({ path: PATH, scope: '/hls/', token, uid: 'other' }), 'bad')
  })

  it('bound to no path: valid for every path under the scope, never outside it', () => {
    const token = signScopedToken(SECRET, UID, '/hls/', EXPIRES)
    for (const path of [PATH, 'hls/a.ts', 'hls/x/y/z.m4s']) assert.equal(check({ path, scope: '/hls/', token }), 'ok', path)
    for (const path of ['hlsx/a.ts', 'other/hls/a.ts', 'hls']) assert.equal(check({ path, scope: '/hls/', token }), 'bad', path)
    const everything = signScopedToken(SECRET, UID, '/', EXPIRES)
    assert.equal(check({ path: 'any/where.ts', scope: '/', token: everything }), 'ok')
  })

  it('no plain token verifies as a scoped one or the other way round, even over crafted uids and paths', () => {
    // A plain message never has a line feed; a scoped one always has: the
    // fields that could smuggle one in are refused.
    const plain = signToken(SECRET, UID, PATH, EXPIRES)
    assert.equal(check({ path: PATH, scope: '/hls/', token: plain }), 'bad')
    assert.equal(check({ path: PATH, token: signScopedToken(SECRET, UID, '/', EXPIRES, PATH) }), 'bad')
    const crafted = scopedMessage('x', '/', undefined, EXPIRES) // as a plain message U:P:E it would need a uid with a line feed
    const [u, ...rest] = crafted.split(':')
    assert.equal(rest.length, 0, 'the scoped message has no ":" to split on here')
    assert.equal(verifyToken(SECRET, `${u}`, '', EXPIRES, hmac(SECRET, crafted).toString('hex')), false)
    assert.throws(() => signToken(SECRET, 'a\nb', PATH, EXPIRES), TypeError)
    assert.throws(() => signToken(SECRET, UID, 'a\nscope=/', EXPIRES), TypeError)
    assert.throws(() => signScopedToken(SECRET, 'a\nscope=/', '/hls/', EXPIRES), TypeError)
    assert.throws(() => signScopedToken(SECRET, UID, '/hls/', EXPIRES, 'hls/a\nexpires=1'), TypeError)
    assert.equal(verifyToken(SECRET, 'a\u0085b', PATH, EXPIRES, hmac(SECRET, `a\u0085b:${PATH}:${EXPIRES}`).toString('hex')), false)
    assert.equal(check({ uid: 'a\nb', path: PATH, scope: '/', token: hmac(SECRET, scopedMessage('a\nb', '/', PATH, EXPIRES)).toString('hex') }), 'bad')
  })

  it('refuses scopes that are no directory, and paths outside the scope', () => {
    for (const scope of ['', 'hls/', '/hls', '//', '/a//b/', '/./', '/a/../', '/a\n/']) {
      assert.equal(isScope(scope), false, JSON.stringify(scope))
      assert.throws(() => signScopedToken(SECRET, UID, scope, EXPIRES), TypeError, JSON.stringify(scope))
      assert.equal(check({ path: PATH, scope, token: signToken(SECRET, UID, PATH, EXPIRES) }), 'bad')
    }
    assert.throws(() => signScopedToken(SECRET, UID, '/other/', EXPIRES, PATH), TypeError)
    assert.equal(directoryOf('t/master.m3u8'), '/t/')
    assert.equal(directoryOf('master.m3u8'), '/')
    assert.equal(inScope('t/a.ts', '/t/'), true)
    assert.equal(inScope('tt/a.ts', '/t/'), false)
  })

  it('signedQuery with a scope: uid, expires, scope (slashes readable), token, sid; it checks out', () => {
    const path = 'hls/a b/index.m3u8'
    const q = signedQuery({ secret: SECRET, uid: UID, path, expires: EXPIRES, scope: '/hls/a b/', sid: 's' })
    assert.match(q, /^uid=user-42&expires=1700000000&scope=\/hls\/a%20b\/&token=[0-9a-f]{64}&sid=s$/)
    const p = new URLSearchParams(q)
    assert.equal(p.get('scope'), '/hls/a b/')
    assert.equal(check({ path, scope: p.get('scope')!, token: p.get('token')! }), 'ok')
  })
})

describe('url signer: IP-bound tokens', () => {
  const v2 = (fields: Array<[string, string]>): string => ['streammeter-token-v2', ...fields.map(([k, v]) => `${k}=${v}`)].join('\n')
  const check = (o: { path?: string, scope?: string, ip?: string, token: string, client?: string, now?: number }): string =>
    checkSignedRequest({ secret: SECRET, uid: UID, path: o.path ?? PATH, expires: String(EXPIRES), token: o.token, scope: o.scope, ip: o.ip, clientIp: o.client, now: o.now ?? EXPIRES })

  it('signs the documented messages: an ip line before expires; without a scope, bound to the path', () => {
    assert.equal(signIpBoundToken(SECRET, UID, PATH, '203.0.113.0/24', EXPIRES),
      hmac(SECRET, v2([['uid', UID], ['path', PATH], ['ip', '203.0.113.0/24'], ['expires', String(EXPIRES)]])).toString('hex'))
    assert.equal(signScopedToken(SECRET, UID, '/hls/', EXPIRES, undefined, '2001:db8::/32'),
      hmac(SECRET, v2([['uid', UID], ['scope', '/hls/'], ['ip', '2001:db8::/32'], ['expires', String(EXPIRES)]])).toString('hex'))
    assert.equal(signScopedToken(SECRET, UID, '/hls/', EXPIRES, PATH, '203.0.113.7'),
      hmac(SECRET, v2([['uid', UID], ['scope', '/hls/'], ['path', PATH], ['ip', '203.0.113.7'], ['expires', String(EXPIRES)]])).toString('hex'))
  })

  it('valid only from a client in the address or block, of the same family (ip-mismatch, a 403, before 410)', () => {
    const token = signIpBoundToken(SECRET, UID, PATH, '203.0.113.0/24', EXPIRES)
    assert.equal(check({ ip: '203.0.113.0/24', token, client: '203.0.113.200' }), 'ok')
    assert.equal(check({ ip: '203.0.113.0/24', token, client: '203.0.113.200', now: EXPIRES + 1 }), 'expired')
    for (const client of ['203.0.114.1', '::ffff:cb00:7101', '2001:db8::1', 'not-an-ip', undefined]) {
      assert.equal(check({ ip: '203.0.113.0/24', token, client }), 'ip-mismatch', String(client))
      assert.equal(check({ ip: '203.0.113.0/24', token, client, now: EXPIRES + 1 }), 'ip-mismatch', `expired, from ${String(client)}`)
    }
    const six = signScopedToken(SECRET, UID, '/hls/', EXPIRES, undefined, '2001:db8::/32')
    assert.equal(check({ scope: '/hls/', ip: '2001:db8::/32', token: six, client: '2001:db8:ab::1' }), 'ok')
    assert.equal(check({ path: 'hls/other.ts', scope: '/hls/', ip: '2001:db8::/32', token: six, client: '2001:db8:ab::1' }), 'ok')
    assert.equal(check({ scope: '/hls/', ip: '2001:db8::/32', token: six, client: '2001:db9::1' }), 'ip-mismatch')
    assert.equal(check({ scope: '/hls/', ip: '2001:db8::/32', token: six, client: '1.2.3.4' }), 'ip-mismatch')
  })

  it('the binding is signed: dropping, widening or adding an ip breaks the token', () => {
    const bound = signIpBoundToken(SECRET, UID, PATH, '203.0.113.7', EXPIRES)
    assert.equal(check({ token: bound, client: '203.0.113.7' }), 'bad', 'ip dropped')
    assert.equal(check({ ip: '203.0.113.0/24', token: bound, client: '203.0.113.7' }), 'bad', 'ip widened')
    const plain = signToken(SECRET, UID, PATH, EXPIRES)
    assert.equal(check({ ip: '203.0.113.7', token: plain, client: '203.0.113.7' }), 'bad', 'ip added to a plain token')
    const scoped = signScopedToken(SECRET, UID, '/hls/', EXPIRES)
    assert.equal(check({ scope: '/hls/', ip: '0.0.0.0/0', token: scoped, client: '203.0.113.7' }), 'bad', 'ip added to a scoped token')
  })

  it('refuses bindings that are no address or block, IPv4-mapped ones, and repeated ones', () => {
    for (const ip of ['', ' 203.0.113.7', '203.0.113.7/33', '2001:db8::/129', '203.0.113', '::ffff:203.0.113.7', '::ffff:203.0.113.0/120', 'fe80::1%eth0', 'localhost']) {
      assert.equal(ipBinding(ip), undefined, ip)
      if (ip !== '') assert.throws(() => signIpBoundToken(SECRET, UID, PATH, ip, EXPIRES), /ip must be/, ip)
    }
    const token = signIpBoundToken(SECRET, UID, PATH, '203.0.113.7', EXPIRES)
    assert.equal(checkSignedRequest({ secret: SECRET, uid: UID, path: PATH, expires: String(EXPIRES), token, ip: ['203.0.113.7', '203.0.113.7'], clientIp: '203.0.113.7', now: EXPIRES }), 'bad')
  })

  it('signedQuery with ip: the binding readable in the query, and it checks out', () => {
    const q = new URLSearchParams(signedQuery({ secret: SECRET, uid: UID, path: PATH, expires: EXPIRES, ip: '2001:db8::/32', sid: 's1' }))
    assert.deepEqual([...q.keys()], ['uid', 'expires', 'ip', 'token', 'sid'])
    assert.equal(q.get('ip'), '2001:db8::/32')
    assert.equal(check({ ip: q.get('ip')!, token: q.get('token')!, client: '2001:db8::5' }), 'ok')
    assert.match(signedQuery({ secret: SECRET, uid: UID, path: PATH, expires: EXPIRES, ip: '2001:db8::/32' }), /&ip=2001:db8::\/32&/)
  })
})
