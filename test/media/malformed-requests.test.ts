import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, it } from 'node:test'
import { rawRequest } from '../helpers/raw-http.ts'
import { startTestServer } from '../helpers/test-server.ts'

const root = mkdtempSync(join(tmpdir(), 'sm-malformed-'))
mkdirSync(join(root, 'v'))
writeFileSync(join(root, 'v', 'a.ts'), Buffer.alloc(4096, 1))
writeFileSync(join(root, 'v', 'i.m3u8'), '#EXTM3U\n#EXTINF:2,\na.ts\n')
after(() => rmSync(root, { recursive: true, force: true }))

/** A small deterministic PRNG so that a failure can be replayed. */
function prng (seed: number): () => number {
  return () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff
    return seed / 0x7fffffff
  }
}

function malformed (port: number): Array<string | Buffer> {
  const host = `Host: 127.0.0.1:${port}\r\n`
  const end = 'Connection: close\r\n\r\n'
  const get = (target: string, headers = ''): string => `GET ${target} HTTP/1.1\r\n${host}${headers}${end}`
  const targets = [
    '/%', '/%zz', '/v/%c3%28.ts', '/v/%ff%fe.ts', '/v/a.ts%', '/v/%E0%A4%A.ts', '/%u002e%u002e/x',
    '/v/a.ts?uid=%', '/v/a.ts?uid=%ff', '/v/a.ts?uid=' + 'u'.repeat(10_240), '/v/i.m3u8?uid=' + 'x'.repeat(10_240),
    '/v/a.ts?expires=abc&uid=a', '/v/a.ts?uid=a&uid=b', '/v/a.ts?sid=' + 's'.repeat(5000) + '&uid=a',
    '/v/i.m3u8?uid=a&sid=%0d%0aSet-Cookie:x', '/v/a.ts?' + '&'.repeat(3000), '/' + 'a/'.repeat(2000),
    'http://evil.example/v/a.ts', 'http://127.0.0.1/../../etc/passwd', '*', 'v/a.ts', '//v/a.ts', '/v//a.ts',
    '/traffic/../v/a.ts', '/health?x=%', '/metrics%00', '/v/a.ts#frag', '/v/a.ts\t', '/\u00e9\u00e8'
  ]
  const ranges = ['bytes=abc', 'bytes=5-1', 'bytes=-', 'items=0-1', 'bytes=0-1,2-3', 'bytes=99999999999999999999-',
    'bytes=-0', 'bytes= 1-2', 'bytes=1-2-3', 'bytes=0-0,-1', '=', 'bytes=4096-', 'bytes=' + '1'.repeat(400) + '-']
  const methods = ['PUT', 'DELETE', 'PATCH', 'PROPFIND', 'TRACE', 'POST', 'OPTIONS', 'FOO', 'CONNECT', 'SEARCH']
  const rand = prng(42)
  const pick = <T>(a: T[]): T => a[Math.floor(rand() * a.length)] as T
  const out: Array<string | Buffer> = []
  for (const t of targets) out.push(get(t))
  for (const r of ranges) out.push(get('/v/a.ts?uid=r', `Range: ${r}\r\n`), get('/v/i.m3u8?uid=r', `Range: ${r}\r\n`))
  for (const m of methods) out.push(`${m} /v/a.ts?uid=m HTTP/1.1\r\n${host}Content-Length: 3\r\n${end}abc`)
  out.push(get('/v/a.ts', `X-Big: ${'b'.repeat(20_000)}\r\n`)) // over Node's header limit: 431
  out.push(get('/v/a.ts', `X-Forwarded-For: ${'1.2.3.4, '.repeat(3000)}\r\n`))
  out.push(get('/v/a.ts', 'Cookie: session_id_fileserver=\u0000;;;=;\r\n'))
  out.push(get('/v/a.ts', 'If-None-Match: ' + '"x",'.repeat(500) + '\r\n'))
  out.push(get('/v/a.ts', 'If-Modified-Since: not a date\r\n'))
  out.push(get('/traffic', 'Authorization: Bearer\r\n'))
  out.push('GET /v/a.ts HTTP/1.0\r\n\r\n')
  out.push(`GET /v/a.ts HTTP/9.9\r\n${host}${end}`)
  out.push(`GET /v/a.ts HTTP/1.1\r\n${host}Content-Length: 5\r\nContent-Length: 6\r\n${end}hello`)
  out.push(`GET /v/a.ts HTTP/1.1\r\n${host}Transfer-Encoding: chunked\r\n${end}zz\r\n`)
  out.push(`GET /v/a.ts HTTP/1.1\r\nBad Header Name: x\r\n${host}${end}`)
  out.push(Buffer.from([0x47, 0x45, 0x54, 0x20, 0x2f, 0xff, 0xfe, 0x00, 0x20, 0x48, 0x54, 0x54, 0x50, 0x2f, 0x31, 0x2e, 0x31, 0x0d, 0x0a, 0x0d, 0x0a]))
  // Random mutations of the above up to 300.
  while (out.length < 300) {
    const base = pick(targets)
    const chars = [...base]
    const i = Math.floor(rand() * (chars.length + 1))
    chars.splice(i, 0, pick(['%', '%2', '%00', '..', '\\', '?', '&uid=', '%2f', '%5c', '#', ';', '~']))
    out.push(get(chars.join(''), rand() < 0.5 ? `Range: ${pick(ranges)}\r\n` : ''))
  }
  return out
}

it('300 malformed requests: no crash, no 500, every answer a 4xx (or a served file), the server still healthy', async (t) => {
  const server = await startTestServer({ root })
  t.after(() => server.close())
  const requests = malformed(server.port)
  assert.equal(requests.length, 300)
  const statuses = new Map<number, number>()
  for (const req of requests) {
    const answer = await rawRequest(server.port, req)
    statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1)
    assert.ok(answer.status < 500, `${answer.status} for ${String(req).slice(0, 120)}`)
    assert.ok(answer.status === 0 || answer.status >= 200, 'an answer or a closed connection')
    assert.doesNotMatch(answer.body, /at .*\.ts:\d+|stack/i)
  }
  t.diagnostic(`statuses: ${JSON.stringify(Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])))}`)
  const health = await rawRequest(server.port, 'GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  assert.equal(health.status, 200)
})
