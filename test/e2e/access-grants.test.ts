/**
 * Grants and sessions through real servers (docs/access.md#grants,
 * #sessions): the `/api/whitelist` API with the original's bodies, bad input,
 * the cookie a grant or signed URL sets, replays, metering, and two
 * `streammeter serve` instances on one Redis (a grant on A honoured by B, a
 * revocation on B stopping A within a second).
 */
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { request } from 'undici'
import { StoreError } from '../../src/errors.ts'
import { signedQuery } from '../../src/server/access/url-signer.ts'
import type { AccessStore } from '../../src/store/access-store.ts'
import { redisOrSkip, redisSuite, uniquePrefix } from '../helpers/redis.ts'
import { startFleet } from '../helpers/serve-fleet.ts'
import { meteredBytes, startTestServer } from '../helpers/test-server.ts'

const KEY = 'grants-api-key'
const SECRET = 'grants-signing-secret'
const UA = 'Player/2.0 (grants test)'
const base = mkdtempSync(join(tmpdir(), 'sm-grants-'))
mkdirSync(join(base, 'videos/t1/720p'), { recursive: true })
mkdirSync(join(base, 'videos/t2'), { recursive: true })
writeFileSync(join(base, 'videos/t1/seg.ts'), Buffer.alloc(3000, 1))
writeFileSync(join(base, 'videos/t1/720p/seg.ts'), Buffer.alloc(2000, 2))
writeFileSync(join(base, 'videos/t2/seg.ts'), Buffer.alloc(1000, 3))
writeFileSync(join(base, 'videos/t1/index.m3u8'), '#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nseg.ts\n#EXT-X-ENDLIST\n')
after(() => rmSync(base, { recursive: true, force: true }))

interface Answer { status: number, body: any, headers: Record<string, string | string[] | undefined> }

/** One call to `base + path`; JSON bodies in and out. */
async function call (url: string, method: 'GET' | 'POST' | 'DELETE', body?: unknown, headers: Record<string, string> = { authorization: `Bearer ${KEY}` }, raw?: string): Promise<Answer> {
  const res = await request(url, {
    method,
    headers: { ...(body !== undefined || raw !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    body: raw ?? (body === undefined ? undefined : JSON.stringify(body)),
    reset: true
  })
  const text = await res.body.text()
  return { status: res.statusCode, body: text === '' ? undefined : JSON.parse(text), headers: res.headers }
}

/** GET a media path as the client at `client` (through a trusted proxy at 127.0.0.1) with the player's agent. */
async function media (url: string, client: string, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await request(url, { headers: { 'user-agent': UA, 'x-forwarded-for': client, ...headers }, reset: true })
  const bytes = (await res.body.arrayBuffer()).byteLength
  return { status: res.statusCode, body: bytes, headers: res.headers }
}

const sessionOf = (a: Answer): string => /session_id_fileserver=([^;]+)/.exec(String(a.headers['set-cookie']))?.[1] ?? ''

describe('grants: /api/whitelist and the requests they let in (node engine)', () => {
  it('grants, lists and revokes with the original\'s bodies; the grant lets plain URLs in and sets the session cookie', async (t) => {
    const server = await startTestServer({ root: base, accessApiKey: KEY, signingSecret: SECRET, trustedProxies: ['127.0.0.1'] })
    t.after(() => server.close())
    const api = `${server.url}/api/whitelist`
    assert.equal((await media(`${server.url}/videos/t1/seg.ts`, '203.0.113.7')).status, 403, 'nothing granted yet')
    const granted = await call(api, 'POST', { uid: 'alice', path: '/videos/t1/master.m3u8', clientIp: '203.0.113.7', UserAgent: UA })
    assert.equal(granted.status, 200, JSON.stringify(granted.body))
    assert.equal(granted.headers['cache-control'], 'no-store')
    assert.deepEqual({ ...granted.body, granted_at: 'x', expires_at: 'x' }, {
      status: 'ok',
      uid: 'alice',
      directory: '/videos/t1/',
      network: '203.0.113.0/24',
      client_ip: '203.0.113.7',
      user_agent: UA,
      granted_at: 'x',
      expires_at: 'x',
      ttl: 3600,
      renewed: false,
      evicted: []
    })
    assert.equal(Date.parse(granted.body.expires_at) - Date.parse(granted.body.granted_at), 3_600_000)

    // From the network, with the agent, under the directory: 200, metered to alice, cookie set.
    const first = await media(`${server.url}/videos/t1/720p/seg.ts`, '203.0.113.99')
    assert.equal(first.status, 200)
    const cookie = String(first.headers['set-cookie'])
    assert.match(cookie, /^session_id_fileserver=[A-Za-z0-9_-]{32}; Max-Age=7200; Path=\/; HttpOnly; SameSite=Lax$/)
    assert.equal(first.headers['x-session-id'], sessionOf(first))
    // Secure when the client reached the proxy over https.
    assert.match(String((await media(`${server.url}/videos/t1/seg.ts`, '203.0.113.7', { 'x-forwarded-proto': 'https' })).headers['set-cookie']), /; Secure$/)
    // The cookie from another network or agent, another uid, or another directory: refused.
    const id = sessionOf(first)
    const withCookie = { cookie: `session_id_fileserver=${id}` }
    assert.equal((await media(`${server.url}/videos/t1/seg.ts`, '198.51.100.7', withCookie)).status, 403)
    assert.equal((await media(`${server.url}/videos/t1/seg.ts`, '203.0.113.7', { ...withCookie, 'user-agent': 'curl/8' })).status, 403)
    assert.equal((await media(`${server.url}/videos/t1/seg.ts?uid=mallory`, '203.0.113.7', withCookie)).status, 403)
    assert.equal((await media(`${server.url}/videos/t2/seg.ts`, '203.0.113.7', withCookie)).status, 403)
    assert.equal((await media(`${server.url}/videos/t1/seg.ts?uid=alice`, '203.0.113.7', withCookie)).status, 200)
    const metered = await meteredBytes(server)
    assert.equal(metered.get('alice'), 2000 + 3000 + 3000)
    assert.equal(metered.get('mallory'), undefined)

    const listed = await call(`${api}?uid=alice`, 'GET')
    assert.equal(listed.status, 200)
    assert.equal(listed.body.count, 1)
    assert.equal(listed.body.grants[0].directory, '/videos/t1/')
    assert.doesNotMatch(JSON.stringify(listed.body), /"agent"/, 'the agent hash is not shown')
    const revoked = await call(`${api}?uid=alice`, 'DELETE')
    assert.deepEqual(revoked.body, { status: 'ok', uid: 'alice', revoked: { grants: 1, sessions: 1 } })
    assert.equal((await media(`${server.url}/videos/t1/seg.ts`, '203.0.113.7', withCookie)).status, 403, 'the session went with the grant')
    assert.equal((await media(`${server.url}/videos/t1/seg.ts`, '203.0.113.7')).status, 403)
    assert.deepEqual((await call(`${api}?uid=alice`, 'GET')).body, { uid: 'alice', count: 0, grants: [] })
    // Denials by reason, uid_mismatch included.
    assert.equal(server.app.denials.counts().uid_mismatch, 1)
  })

  it('a signed URL sets the cookie too, and the session then lets in plain URLs of its directory', async (t) => {
    const server = await startTestServer({ root: base, signingSecret: SECRET, trustedProxies: ['127.0.0.1'] })
    t.after(() => server.close())
    const expires = Math.floor(Date.now() / 1000) + 60
    const signed = await media(`${server.url}/videos/t1/seg.ts?${signedQuery({ secret: SECRET, uid: 'bob', path: 'videos/t1/seg.ts', expires })}`, '203.0.113.7')
    assert.equal(signed.status, 200)
    const withCookie = { cookie: `session_id_fileserver=${sessionOf(signed)}` }
    assert.equal((await media(`${server.url}/videos/t1/720p/seg.ts`, '203.0.113.7', withCookie)).status, 200)
    assert.equal((await media(`${server.url}/videos/t1/720p/seg.ts`, '203.0.113.7', { 'x-session-id': sessionOf(signed) })).status, 200)
    assert.equal((await media(`${server.url}/videos/t2/seg.ts`, '203.0.113.7', withCookie)).status, 403)
    assert.equal((await meteredBytes(server)).get('bob'), 3000 + 2000 + 2000)
    // A playlist the session lets in: its children carry the uid, never the session (a credential) in a URL.
    const playlist = await request(`${server.url}/videos/t1/index.m3u8`, { headers: { 'user-agent': UA, 'x-forwarded-for': '203.0.113.7', ...withCookie }, reset: true })
    const text = await playlist.body.text()
    assert.equal(playlist.statusCode, 200)
    assert.match(text, /\nseg\.ts\?uid=bob\n/)
    assert.doesNotMatch(text, new RegExp(sessionOf(signed)))
    // Without a key the whitelist API is off.
    assert.equal((await call(`${server.url}/api/whitelist`, 'POST', { uid: 'x', path: '/a.ts', clientIp: '1.2.3.4', UserAgent: '' })).status, 403)
  })

  it('bad input gets a 400 JSON error naming the problem; a wrong key 401, huge bodies 400', async (t) => {
    const server = await startTestServer({ root: base, accessApiKey: KEY })
    t.after(() => server.close())
    const api = `${server.url}/api/whitelist`
    const good = { uid: 'alice', path: '/videos/t1/master.m3u8', clientIp: '203.0.113.7', UserAgent: UA }
    const bad: Array<[unknown, RegExp]> = [
      [{ ...good, uid: undefined }, /^uid: /],
      [{ ...good, uid: 42 }, /^uid: /],
      [{ ...good, uid: '' }, /^uid: /],
      [{ ...good, uid: 'x'.repeat(257) }, /^uid: longer/],
      [{ ...good, uid: 'a\nb' }, /^uid: .*control/],
      [{ ...good, path: undefined }, /^path: /],
      [{ ...good, path: ['/a'] }, /^path: /],
      [{ ...good, path: '/videos/../etc/passwd' }, /^path: /],
      [{ ...good, path: '/videos//t1/a.ts' }, /^path: /],
      [{ ...good, path: '/videos/.hidden/a.ts' }, /^path: /],
      [{ ...good, clientIp: 'example.com' }, /^clientIp: /],
      [{ ...good, clientIp: '203.0.113.0/24' }, /^clientIp: /],
      [{ ...good, clientIp: undefined }, /^clientIp: /],
      [{ ...good, UserAgent: undefined }, /^UserAgent: /],
      [{ ...good, UserAgent: 'x'.repeat(8193) }, /^UserAgent: /],
      [[good], /^uid: /]
    ]
    for (const [body, message] of bad) {
      const answer = await call(api, 'POST', body)
      assert.equal(answer.status, 400, JSON.stringify(body).slice(0, 80))
      assert.equal(answer.body.error.code, 'SM_ERR_BAD_REQUEST')
      assert.match(answer.body.error.message, message)
    }
    assert.equal((await call(api, 'POST', undefined, { authorization: `Bearer ${KEY}` }, '{"uid":')).status, 400)
    assert.equal((await call(api, 'POST', undefined, { authorization: `Bearer ${KEY}` }, JSON.stringify({ ...good, pad: 'x'.repeat(20_000) }))).status, 400)
    assert.equal((await call(`${api}?uid=`, 'GET')).status, 400)
    assert.equal((await call(api, 'DELETE')).status, 400)
    const wrong = await call(api, 'POST', good, { authorization: 'Bearer nope' })
    assert.equal(wrong.status, 401)
    assert.equal(wrong.headers['www-authenticate'], 'Bearer')
    assert.equal((await call(api, 'POST', good, { authorization: KEY })).status, 200, 'the bare key, as the original took it')
    assert.doesNotMatch(JSON.stringify(wrong.body), new RegExp(KEY))
  })
})

describe('grants when the store does not answer', () => {
  it('the API answers 503 JSON; a request only a grant could let in is 503, never let through; signed URLs still work', async (t) => {
    const down = new Proxy({} as AccessStore, { get: () => async () => { throw new StoreError('the store is down') } })
    const server = await startTestServer({ root: base, accessApiKey: KEY, signingSecret: SECRET, trustedProxies: ['127.0.0.1'], accessStore: down })
    t.after(() => server.close())
    const posted = await call(`${server.url}/api/whitelist`, 'POST', { uid: 'alice', path: '/videos/t1/', clientIp: '203.0.113.7', UserAgent: UA })
    assert.equal(posted.status, 503)
    assert.equal(posted.body.error.code, 'SM_ERR_ACCESS_UNAVAILABLE')
    assert.doesNotMatch(JSON.stringify(posted.body), /store is down/, 'the cause stays in the log')
    assert.equal((await call(`${server.url}/api/whitelist?uid=alice`, 'GET')).status, 503)
    assert.equal((await call(`${server.url}/api/whitelist?uid=alice`, 'DELETE')).status, 503)
    const plain = await media(`${server.url}/videos/t1/seg.ts`, '203.0.113.7')
    assert.equal(plain.status, 503)
    const expires = Math.floor(Date.now() / 1000) + 60
    assert.equal((await media(`${server.url}/videos/t1/seg.ts?${signedQuery({ secret: SECRET, uid: 'bob', path: 'videos/t1/seg.ts', expires })}`, '203.0.113.7')).status, 200)
  })
})

const redis = await redisSuite()

describe('grants and sessions shared by two instances on one Redis', redis, () => {
  it('a grant posted on A is honoured by B; a revocation on B stops A within a second', async (t) => {
    if (!await redisOrSkip(t)) return
    const [a, b] = await startFleet(t, 2, uniquePrefix('grants'), {
      ORIGIN_ROOT: base, SIGNING_SECRET: SECRET, ACCESS_API_KEY: KEY, TRUSTED_PROXIES: '127.0.0.1', TRAFFIC_COLLECTOR_ENABLED: 'false'
    })
    if (a === undefined || b === undefined) throw new Error('two servers')
    const posted = await call(`${a.url}/api/whitelist`, 'POST', { uid: 'carol', path: '/videos/t1/', clientIp: '2001:db8:5:6::7', UserAgent: UA })
    assert.equal(posted.status, 200)
    assert.equal(posted.body.network, '2001:db8:5:6::/64')
    // B may have cached "no grant" for this network for up to a second.
    let viaB: Answer | undefined
    const grantedAt = Date.now()
    for (;;) {
      viaB = await media(`${b.url}/videos/t1/seg.ts`, '2001:db8:5:6::99')
      if (viaB.status === 200 || Date.now() - grantedAt > 1500) break
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    assert.equal(viaB.status, 200)
    const withCookie = { cookie: `session_id_fileserver=${sessionOf(viaB)}` }
    assert.equal((await media(`${a.url}/videos/t1/720p/seg.ts`, '2001:db8:5:6::1', withCookie)).status, 200, 'B\'s session works on A')
    assert.equal((await call(`${b.url}/api/whitelist?uid=carol`, 'GET')).body.count, 1)

    const revoked = await call(`${b.url}/api/whitelist?uid=carol`, 'DELETE')
    const revokedAt = Date.now()
    assert.deepEqual(revoked.body.revoked, { grants: 1, sessions: 1 })
    let stoppedAfter = -1
    while (Date.now() - revokedAt < 3000) {
      const [byCookie, byGrant] = await Promise.all([
        media(`${a.url}/videos/t1/seg.ts`, '2001:db8:5:6::1', withCookie),
        media(`${a.url}/videos/t1/seg.ts`, '2001:db8:5:6::2')
      ])
      if (byCookie.status === 403 && byGrant.status === 403) {
        stoppedAfter = Date.now() - revokedAt
        break
      }
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
    assert.ok(stoppedAfter >= 0 && stoppedAfter <= 1000, `A stopped ${stoppedAfter} ms after the revocation`)
    t.diagnostic(`A stopped honouring the revoked grant and session ${stoppedAfter} ms after DELETE answered on B`)
  })
})
