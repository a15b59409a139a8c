import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { request } from 'undici'
import { signScopedToken, signToken, signedQuery } from '../../src/server/access/url-signer.ts'
import { nginxOrSkip, startOwnNginx } from '../helpers/own-nginx.ts'
import { startTestServer } from '../helpers/test-server.ts'
import { waitFor } from '../helpers/wait.ts'

const SECRET = 'nginx-engine secret with $ and \' in it'
const NOW = Math.floor(Date.now() / 1000)
const LATER = NOW + 3600
const EARLIER = NOW - 3600

const root = mkdtempSync(join(tmpdir(), 'sm-nginx-root-'))
mkdirSync(join(root, 'v/sub'), { recursive: true })
mkdirSync(join(root, 'w'))
writeFileSync(join(root, 'v/seg.ts'), Buffer.alloc(5000, 1))
writeFileSync(join(root, 'v/sub/a.m4s'), Buffer.alloc(3000, 2))
writeFileSync(join(root, 'w/x.ts'), Buffer.alloc(100, 3))
writeFileSync(join(root, 'v/a.vtt'), 'WEBVTT\n')
writeFileSync(join(root, 'v/a~b_c-d.ts'), Buffer.alloc(700, 4))
writeFileSync(join(root, 'v/.env'), 'SECRET=1')
after(() => rmSync(root, { recursive: true, force: true }))

const hmacHex = (message: string): string => createHmac('sha256', SECRET).update(message).digest('hex')
const plain = (uid: string, path: string, expires: number): string => `uid=${encodeURIComponent(uid)}&expires=${expires}&token=${signToken(SECRET, uid, path, expires)}`

/** Requests covering every rule of a signed URL (docs/access.md#signed-urls). */
const TARGETS: string[] = [
  `/v/seg.ts?${plain('u1', 'v/seg.ts', LATER)}`,
  `/v/seg.ts?uid=u1&expires=${LATER}&token=${Buffer.from(signToken(SECRET, 'u1', 'v/seg.ts', LATER), 'hex').toString('base64url')}`,
  `/v/seg.ts?uid=u1&expires=${LATER}&token=${signToken(SECRET, 'u1', 'v/seg.ts', LATER).toUpperCase()}`,
  `/v/seg.ts?uid=u1&expires=${LATER}&token=${'0'.repeat(64)}`,
  `/v/seg.ts?${plain('u1', 'v/seg.ts', EARLIER)}`,
  `/v/seg.ts?uid=u1&expires=${EARLIER}&token=${'0'.repeat(64)}`,
  `/v/seg.ts?uid=u1&token=${signToken(SECRET, 'u1', 'v/seg.ts', LATER)}`,
  `/v/seg.ts?uid=u1&expires=1e9&token=${signToken(SECRET, 'u1', 'v/seg.ts', LATER)}`,
  `/v/seg.ts?uid=a:b&expires=${LATER}&token=${hmacHex(`a:b:v/seg.ts:${LATER}`)}`,
  `/v/seg.ts?uid=a%0Ab&expires=${LATER}&token=${hmacHex(`a\nb:v/seg.ts:${LATER}`)}`,
  `/v/seg.ts?${plain('x'.repeat(256), 'v/seg.ts', LATER)}`,
  `/v/seg.ts?${plain('x'.repeat(257).slice(1), 'v/seg.ts', LATER)}&uid=${'y'.repeat(257)}`,
  `/v/seg.ts?uid=${'x'.repeat(257)}&expires=${LATER}&token=${'0'.repeat(64)}`,
  `/v/seg.ts?${signedQuery({ secret: SECRET, uid: 'u2', path: 'v/seg.ts', expires: LATER, scope: '/v/' })}`,
  `/v/sub/a.m4s?uid=u3&expires=${LATER}&scope=/v/&token=${signScopedToken(SECRET, 'u3', '/v/', LATER)}`,
  `/w/x.ts?uid=u3&expires=${LATER}&scope=/v/&token=${signScopedToken(SECRET, 'u3', '/v/', LATER)}`,
  `/w/x.ts?uid=u3&expires=${LATER}&scope=/&token=${signScopedToken(SECRET, 'u3', '/', LATER)}`,
  `/v/seg.ts?uid=u3&expires=${LATER}&scope=v/&token=${signScopedToken(SECRET, 'u3', '/v/', LATER)}`,
  `/v/seg.ts?uid=u3&expires=${EARLIER}&scope=/v/&token=${signScopedToken(SECRET, 'u3', '/v/', EARLIER)}`,
  `/v/seg.ts?${plain('u1', 'v/seg.ts', LATER)}&uid=someone-else`,
  `/v/seg.ts?uid=someone-else&${plain('u1', 'v/seg.ts', LATER)}`,
  `/v/seg.ts?${plain('a b', 'v/seg.ts', LATER)}`,
  `/v/seg.ts?uid=a+b&expires=${LATER}&token=${signToken(SECRET, 'a b', 'v/seg.ts', LATER)}`,
  `/v/seg.ts?${plain('é-ü', 'v/seg.ts', LATER)}`,
  `/v/seg.ts?uid=&expires=${LATER}&token=${'0'.repeat(64)}`,
  '/v/seg.ts',
  `/v/missing.ts?${plain('u1', 'v/missing.ts', LATER)}`,
  `/v/.env?${plain('u1', 'v/.env', LATER)}`,
  `/v/a.vtt?${plain('u1', 'v/a.vtt', LATER)}`,
  `/v/seg.ts?${plain('😀'.repeat(128), 'v/seg.ts', LATER)}`,
  `/v/seg.ts?${plain('😀'.repeat(129), 'v/seg.ts', LATER)}`,
  '/v?uid=dir',
  // The path rules (request-path.ts), on the raw path before nginx normalises it.
  `/v/../w/x.ts?${plain('u1', 'w/x.ts', LATER)}`,
  `/v/%2e%2e/w/x.ts?${plain('u1', 'w/x.ts', LATER)}`,
  '/../x.ts?uid=u1',
  `/v//seg.ts?${plain('u1', 'v/seg.ts', LATER)}`,
  `/v/./seg.ts?${plain('u1', 'v/seg.ts', LATER)}`,
  '/v/',
  '/v/%2Fseg.ts?uid=u1',
  '/v/%5Cseg.ts?uid=u1',
  '/v/seg%00.ts?uid=u1',
  '/v/%ZZ.ts?uid=u1',
  '/v/%4.ts?uid=u1',
  '/v/%C3%28.ts?uid=u1',
  '/v/a%0Ab.ts?uid=u1',
  '/v/a%7Fb.ts?uid=u1',
  `/v/${'a'.repeat(2100)}.ts?uid=u1`,
  '/v/../.env?uid=u1',
  '/v/%2e%2e/v/.env?uid=u1',
  `/v/s%65g.ts?${plain('u1', 'v/seg.ts', LATER)}`,
  // Queries in the signer's form, which nginx splits itself (nginx-config.ts
  // `$sm_signed_message`), and the nearest ones that are not.
  `/v/a~b_c-d.ts?${plain('u1', 'v/a~b_c-d.ts', LATER)}`,
  `/v/seg.ts?${plain('u1', 'v/seg.ts', LATER)}&sid=abc-1`,
  `/v/seg.ts?${plain('u1', 'v/seg.ts', LATER)}&sid=a%20b`,
  `/v/seg.ts?${plain('u1', 'v/seg.ts', LATER)}&sid=`,
  `/v/seg.ts?${plain('u1', 'v/seg.ts', LATER)}&x=1`,
  `/v/seg.ts?x=1&${plain('u1', 'v/seg.ts', LATER)}`,
  `/v/seg.ts?UID=u1&expires=${LATER}&token=${signToken(SECRET, 'u1', 'v/seg.ts', LATER)}`,
  `/v/seg.ts?uid=u1&Expires=${LATER}&token=${signToken(SECRET, 'u1', 'v/seg.ts', LATER)}`,
  `/v/seg.ts?${plain('u1', 'v/seg.ts', LATER)}&token=${'0'.repeat(64)}`,
  `/v/seg.ts?uid=u1&expires=0${LATER}&token=${hmacHex(`u1:v/seg.ts:0${LATER}`)}`,
  `/v/seg.ts?uid=u1&expires=${'9'.repeat(15)}&token=${hmacHex(`u1:v/seg.ts:${'9'.repeat(15)}`)}`,
  `/v/seg.ts?uid=u1&expires=${'9'.repeat(16)}&token=${hmacHex(`u1:v/seg.ts:${'9'.repeat(16)}`)}`,
  `/v/seg.ts?${plain('x'.repeat(128), 'v/seg.ts', LATER)}`,
  `/v/seg.ts?${plain('x'.repeat(129), 'v/seg.ts', LATER)}`,
  `/v/seg.ts?${plain('u1', 'v/seg.ts', LATER)}&`,
  `/v/seg.ts?uid=u1&expires=${LATER}&token=${signToken(SECRET, 'u1', 'v/seg.ts', LATER).slice(0, 63)}`
]

/** Requests in another method than GET: [method, target]. */
const METHODS: Array<[string, string]> = [
  ['POST', `/v/seg.ts?${plain('u1', 'v/seg.ts', LATER)}`],
  ['DELETE', '/v/seg.ts'],
  ['HEAD', `/v/seg.ts?${plain('u1', 'v/seg.ts', LATER)}`]
]

interface Answer { status: number, type: string | undefined, body: string, allow?: string | undefined }

async function fetchAll (base: string): Promise<Answer[]> {
  const out: Answer[] = []
  for (const [method, target] of METHODS) {
    const res = await request(`${base}${target}`, { method: method as 'POST' })
    const body = await res.body.text()
    out.push({ status: res.statusCode, type: res.headers['content-type'] as string | undefined, body, allow: res.headers.allow as string | undefined })
  }
  for (const target of TARGETS) {
    const res = await request(`${base}${target}`)
    const body = await res.body.text()
    out.push({ status: res.statusCode, type: res.headers['content-type'] as string | undefined, body: res.statusCode === 200 ? `${body.length} bytes` : body })
  }
  return out
}

describe('the nginx engine\'s access check (njs) answers as the node engine does', () => {
  it('every signed-URL case: the same status, content type and JSON error', async (t) => {
    if (!nginxOrSkip(t)) return
    const nginx = await startOwnNginx(t, { root, signingSecret: SECRET })
    const node = await startTestServer({ root, signingSecret: SECRET })
    t.after(() => node.close())
    const [fromNginx, fromNode] = [await fetchAll(nginx.url), await fetchAll(node.url)]
    const names = [...METHODS.map(([m, target]) => `${m} ${target}`), ...TARGETS]
    for (let i = 0; i < names.length; i++) {
      assert.deepEqual(fromNginx[i], fromNode[i], names[i])
    }
    // The cases cover every verdict.
    assert.deepEqual([...new Set(fromNode.map((a) => a.status))].sort(), [200, 400, 403, 404, 405, 410])
  })

  it('allowed networks (ACCESS_ALLOW_CIDRS): every case answers as in the node engine, and the same uid is logged', async (t) => {
    if (!nginxOrSkip(t)) return
    // The test's requests come from 127.0.0.1; through a trusted proxy on
    // loopback, X-Forwarded-For names the client the networks are checked against.
    const settings = { root, signingSecret: SECRET, trustedProxies: ['127.0.0.1'], accessAllowCidrs: ['203.0.113.0/24', '2001:db8::/32', '::ffff:198.51.100.7'] }
    const nginx = await startOwnNginx(t, settings)
    const node = await startTestServer(settings)
    t.after(() => node.close())
    const clients = ['203.0.113.9', '2001:db8::1', '198.51.100.7', '198.51.100.8', '192.0.2.1']
    const cases = clients.flatMap((ip) => [
      `/v/seg.ts?uid=u1&expires=${LATER}&token=${'0'.repeat(64)}`,
      `/v/seg.ts?${plain('u1', 'v/seg.ts', EARLIER)}`,
      '/v/seg.ts?uid=open%20u',
      '/v/seg.ts',
      `/v/seg.ts?uid=${'x'.repeat(257)}`,
      `/v/seg.ts?${plain('u2', 'v/seg.ts', LATER)}`
    ].map((target) => [ip, target] as const))
    const ask = async (base: string, ip: string, target: string): Promise<Answer> => {
      const res = await request(`${base}${target}`, { headers: { 'x-forwarded-for': ip, 'x-case': `${ip} ${target}` } })
      const body = await res.body.text()
      return { status: res.statusCode, type: res.headers['content-type'] as string | undefined, body: res.statusCode === 200 ? `${body.length} bytes` : body }
    }
    for (const [ip, target] of cases) {
      assert.deepEqual(await ask(nginx.url, ip, target), await ask(node.url, ip, target), `${ip} ${target}`)
    }
    // The uid nginx logs is the one the node engine meters: the parameter
    // from an allowed network, the signed one elsewhere, none when refused.
    const lines = (): Array<Record<string, unknown>> => nginx.lines().filter((l) => l.path === '/v/seg.ts')
    await waitFor(() => lines().length >= cases.length, 5000, 'every line')
    const logged = lines().map((l) => [l.xff, l.uid, l.status])
    const expected = cases.map(([ip, target]) => {
      const allowed = ip !== '198.51.100.8' && ip !== '192.0.2.1'
      const uid = new URLSearchParams(target.split('?')[1] ?? '').get('uid') ?? ''
      if (uid.length > 256) return [ip, '', 400]
      if (allowed) return [ip, uid, 200]
      return target.includes('u2') ? [ip, 'u2', 200] : [ip, '', target.includes(`expires=${EARLIER}`) ? 410 : 403]
    })
    assert.deepEqual(logged, expected)
  })

  it('IP-bound signed URLs: the same answer from clients inside and outside the binding, and for malformed bindings', async (t) => {
    if (!nginxOrSkip(t)) return
    const settings = { root, signingSecret: SECRET, trustedProxies: ['127.0.0.1'] }
    const nginx = await startOwnNginx(t, settings)
    const node = await startTestServer(settings)
    t.after(() => node.close())
    const bound = (path: string, ip: string, scope?: string, expires = LATER): string =>
      `/${path}?${signedQuery({ secret: SECRET, uid: 'ipu', path, expires, ip, ...(scope === undefined ? {} : { scope }) })}`
    const v4 = bound('v/seg.ts', '203.0.113.0/24')
    const targets = [
      v4,
      bound('v/seg.ts', '203.0.113.7'),
      bound('v/seg.ts', '203.0.113.128/25'),
      bound('v/seg.ts', '2001:db8::/32'),
      bound('v/seg.ts', '2001:db8::1'),
      bound('v/seg.ts', '0.0.0.0/0'),
      bound('v/seg.ts', '::/0'),
      bound('v/sub/a.m4s', '203.0.113.0/24', '/v/'),
      bound('v/seg.ts', '203.0.113.0/24', undefined, EARLIER),
      v4.replace('ip=203.0.113.0/24', 'ip=203.0.113.0/23'),
      v4.replace('&ip=203.0.113.0/24', ''),
      v4.replace('ip=203.0.113.0/24', 'ip=203.0.113.0%2F24'),
      `${v4}&ip=198.51.100.0/24`,
      `/v/seg.ts?${plain('u1', 'v/seg.ts', LATER)}&ip=203.0.113.7`,
      `/v/seg.ts?uid=ipu&expires=${LATER}&ip=::ffff:203.0.113.7&token=${hmacHex(`streammeter-token-v2\nuid=ipu\npath=v/seg.ts\nip=::ffff:203.0.113.7\nexpires=${LATER}`)}`,
      ...['203.0.113', '203.0.113.0/33', '01.2.3.4', '1::2::3', '2001:db8::/129', 'fe80::1%25eth0', '%20203.0.113.7', '12345::'].map((ip) =>
        `/v/seg.ts?uid=ipu&expires=${LATER}&ip=${ip}&token=${hmacHex(`streammeter-token-v2\nuid=ipu\npath=v/seg.ts\nip=${decodeURIComponent(ip)}\nexpires=${LATER}`)}`)
    ]
    const clients = ['203.0.113.7', '203.0.113.200', '203.0.112.1', '2001:db8::1', '2001:db8:0:0:0:0:0:1', '2001:db9::1', '::ffff:203.0.113.7']
    const ask = async (base: string, target: string, ip: string): Promise<Answer> => {
      const res = await request(`${base}${target}`, { headers: { 'x-forwarded-for': ip } })
      const body = await res.body.text()
      return { status: res.statusCode, type: res.headers['content-type'] as string | undefined, body: res.statusCode === 200 ? `${body.length} bytes` : body }
    }
    const statuses = new Set<number>()
    for (const target of targets) {
      for (const ip of clients) {
        const fromNode = await ask(node.url, target, ip)
        statuses.add(fromNode.status)
        assert.deepEqual(await ask(nginx.url, target, ip), fromNode, `${ip} ${target}`)
      }
    }
    assert.deepEqual([...statuses].sort(), [200, 403, 410])
  })

  it('open extensions (ACCESS_OPEN_EXTENSIONS): the same answers, and nothing metered unless a signature let the request in', async (t) => {
    if (!nginxOrSkip(t)) return
    const settings = { root, signingSecret: SECRET, openExtensions: ['ts', 'm4s'] }
    const nginx = await startOwnNginx(t, settings)
    const node = await startTestServer({ root, signingSecret: SECRET, accessOpenExtensions: ['ts', 'm4s'] })
    t.after(() => node.close())
    const cases: Array<[string, number, string]> = [
      ['/v/seg.ts', 200, ''],
      ['/v/seg.ts?uid=claimed', 200, ''],
      [`/v/seg.ts?uid=u1&expires=${LATER}&token=${'0'.repeat(64)}`, 200, ''],
      [`/v/seg.ts?${plain('u1', 'v/seg.ts', EARLIER)}`, 200, ''],
      [`/v/seg.ts?${plain('u1', 'v/seg.ts', LATER)}`, 200, 'u1'],
      [`/v/sub/a.m4s?uid=u3&expires=${LATER}&scope=/v/&token=${signScopedToken(SECRET, 'u3', '/v/', LATER)}`, 200, 'u3'],
      [`/v/seg.ts?uid=${'x'.repeat(257)}`, 400, ''],
      ['/v/a.vtt?uid=claimed', 403, ''],
      ['/v/missing.ts', 404, ''],
      ['/v/.env', 404, '']
    ]
    for (const [target, status] of cases) {
      const fromNode = await request(`${node.url}${target}`)
      const fromNginx = await request(`${nginx.url}${target}`)
      const [a, b] = [await fromNode.body.text(), await fromNginx.body.text()]
      assert.equal(fromNode.statusCode, status, target)
      assert.deepEqual([fromNginx.statusCode, fromNginx.headers['content-type'], b.length], [fromNode.statusCode, fromNode.headers['content-type'], a.length], target)
    }
    const served = cases.filter(([, status]) => status === 200)
    const lines = (): Array<Record<string, unknown>> => nginx.lines().filter((l) => l.status === 200)
    await waitFor(() => lines().length >= served.length, 5000, 'every line')
    assert.deepEqual(lines().map((l) => l.uid), served.map(([,, uid]) => uid))
  })

  it('ACCESS_API_KEY without a secret: an unsigned uid grants nothing, in both engines; an allowed network still passes', async (t) => {
    if (!nginxOrSkip(t)) return
    const nginx = await startOwnNginx(t, { root, signingSecret: undefined, locked: true, trustedProxies: ['127.0.0.1'], accessAllowCidrs: ['203.0.113.0/24'] })
    const node = await startTestServer({ root, accessApiKey: 'some-key', trustedProxies: ['127.0.0.1'], accessAllowCidrs: ['203.0.113.0/24'] })
    t.after(() => node.close())
    const ask = async (base: string, target: string, ip: string): Promise<Answer> => {
      const res = await request(`${base}${target}`, { headers: { 'x-forwarded-for': ip } })
      const body = await res.body.text()
      return { status: res.statusCode, type: res.headers['content-type'] as string | undefined, body: res.statusCode === 200 ? `${body.length} bytes` : body }
    }
    for (const [target, ip, status] of [
      ['/v/seg.ts?uid=u1', '192.0.2.1', 403],
      ['/v/seg.ts', '192.0.2.1', 403],
      [`/v/seg.ts?${plain('u1', 'v/seg.ts', LATER)}`, '192.0.2.1', 403],
      ['/v/seg.ts?uid=u1', '203.0.113.5', 200],
      [`/v/seg.ts?uid=${'x'.repeat(257)}`, '192.0.2.1', 400]
    ] as const) {
      const fromNode = await ask(node.url, target, ip)
      assert.equal(fromNode.status, status, `${ip} ${target}`)
      assert.deepEqual(await ask(nginx.url, target, ip), fromNode, `${ip} ${target}`)
    }
  })

  it('a range past the end and an oversized head: the same status, JSON error and Content-Range', async (t) => {
    if (!nginxOrSkip(t)) return
    const nginx = await startOwnNginx(t, { root, signingSecret: SECRET })
    const node = await startTestServer({ root, signingSecret: SECRET })
    t.after(() => node.close())
    const ask = async (base: string, headers: Record<string, string>): Promise<Record<string, unknown>> => {
      const res = await request(`${base}/v/seg.ts?${plain('u1', 'v/seg.ts', LATER)}`, { headers, reset: true })
      return { status: res.statusCode, type: res.headers['content-type'], range: res.headers['content-range'], body: await res.body.text() }
    }
    const cases: Array<Record<string, string>> = [{ range: 'bytes=999999-' }, { 'x-big': 'x'.repeat(20 * 1024) }]
    for (const headers of cases) {
      const [fromNginx, fromNode] = [await ask(nginx.url, headers), await ask(node.url, headers)]
      assert.deepEqual(fromNginx, fromNode, Object.keys(headers)[0])
    }
  })

  // Apart from the comparison: the second may turn between the two engines' answers.
  it('a URL is valid through its expires second, and expired after it', async (t) => {
    if (!nginxOrSkip(t)) return
    const nginx = await startOwnNginx(t, { root, signingSecret: SECRET })
    const statusAt = async (offset: number): Promise<number> => {
      for (;;) {
        const second = Math.floor(Date.now() / 1000)
        const res = await request(`${nginx.url}/v/seg.ts?${plain('u1', 'v/seg.ts', second + offset)}`, { reset: true })
        await res.body.dump()
        if (Math.floor(Date.now() / 1000) === second) return res.statusCode
      }
    }
    assert.equal(await statusAt(0), 200)
    assert.equal(await statusAt(-1), 410)
  })

  it('logs one JSON line per finished request, with the uid only when the request checked out', async (t) => {
    if (!nginxOrSkip(t)) return
    const nginx = await startOwnNginx(t, { root, signingSecret: SECRET })
    const ok = await request(`${nginx.url}/v/seg.ts?${plain('é-ü', 'v/seg.ts', LATER)}`, { headers: { range: 'bytes=0-99' } })
    await ok.body.dump()
    const bad = await request(`${nginx.url}/v/seg.ts?uid=u1&expires=${LATER}&token=${'0'.repeat(64)}`)
    await bad.body.dump()
    // nginx writes a line just after the response's last byte went out.
    await waitFor(() => nginx.lines().filter((l) => l.path === '/v/seg.ts').length >= 2, 5000, 'both lines')
    const lines = nginx.lines().filter((l) => l.path === '/v/seg.ts')
    assert.deepEqual(lines.map((l) => [l.uid, l.bytes, l.status, l.method, l.done]), [
      ['é-ü', 100, 206, 'GET', 'OK'],
      ['', bad.headers['content-length'] === undefined ? -1 : Number(bad.headers['content-length']), 403, 'GET', 'OK']
    ])
  })

  it('logs the uid and session that URLSearchParams reads, for queries in the signer\'s form and any other', async (t) => {
    if (!nginxOrSkip(t)) return
    const nginx = await startOwnNginx(t, { root, signingSecret: SECRET })
    const queries = [
      `${plain('u1', 'v/seg.ts', LATER)}&sid=abc-1`,
      `${plain('u1', 'v/seg.ts', LATER)}&sid=a%20b+c`,
      `${plain('u1', 'v/seg.ts', LATER)}&SID=upper`,
      `sid=first&${plain('u1', 'v/seg.ts', LATER)}&sid=second`,
      `${plain('a b', 'v/seg.ts', LATER)}&sid=s2`,
      `${plain('u1', 'v/seg.ts', LATER)}`,
      `${plain('u1', 'v/seg.ts', EARLIER)}&sid=late`
    ]
    for (const q of queries) {
      const res = await request(`${nginx.url}/v/seg.ts?${q}`, { headers: { 'x-query': q } })
      await res.body.dump()
    }
    await waitFor(() => nginx.lines().filter((l) => l.path === '/v/seg.ts').length >= queries.length, 5000, 'every line')
    const lines = nginx.lines().filter((l) => l.path === '/v/seg.ts')
    assert.deepEqual(lines.map((l) => [l.uid, l.sid, l.status]), queries.map((q) => {
      const p = new URLSearchParams(q)
      const allowed = !q.includes(`expires=${EARLIER}`)
      return [allowed ? p.get('uid') : '', p.get('sid') ?? '', allowed ? 200 : 410]
    }))
  })
})
