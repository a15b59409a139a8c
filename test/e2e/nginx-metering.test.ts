import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { request } from 'undici'
import { TrafficCollector, policyOf, resolveMeterOptions } from '../../src/meter/index.ts'
import { MemoryStore } from '../../src/store/index.ts'
import { ClientIpResolver } from '../../src/server/access/client-ip.ts'
import { signToken } from '../../src/server/access/url-signer.ts'
import { MeteringInput } from '../../src/server/metering/metering-input.ts'
import { AccessLogReader } from '../../src/server/nginx/access-log-reader.ts'
import { nginxOrSkip, startOwnNginx } from '../helpers/own-nginx.ts'

const SECRET = 'metering secret'
const LATER = Math.floor(Date.now() / 1000) + 3600
const BIG = 8 * 1024 * 1024

const root = mkdtempSync(join(tmpdir(), 'sm-nginx-meter-'))
writeFileSync(join(root, 'seg.ts'), Buffer.alloc(5000, 1))
writeFileSync(join(root, 'big.mp4'), Buffer.alloc(BIG, 2))
after(() => rmSync(root, { recursive: true, force: true }))

const signed = (uid: string, path: string): string => `/${path}?uid=${uid}&expires=${LATER}&token=${signToken(SECRET, uid, path, LATER)}`

describe('metering from the nginx engine\'s access log', () => {
  it('every byte nginx sent is metered once, under its uid, session and client IP', async (t) => {
    if (!nginxOrSkip(t)) return
    const nginx = await startOwnNginx(t, { root, signingSecret: SECRET })
    const meter = resolveMeterOptions({ workerId: 'nginx-test', minBytes: 0 })
    const store = new MemoryStore(policyOf(meter))
    const collector = new TrafficCollector(meter, { store })
    const reader = new AccessLogReader({ path: nginx.accessLog, key: 'nginx:test', metering: new MeteringInput(collector, Date.now), ips: new ClientIpResolver(['127.0.0.1']) })
    reader.read() // nginx's start-up probe
    const received = new Map<string, number>()
    const got = (uid: string, n: number): void => { received.set(uid, (received.get(uid) ?? 0) + n) }

    // Whole files, twice, with a session header and a forwarded client.
    for (let i = 0; i < 2; i++) {
      const res = await request(`${nginx.url}${signed('whole', 'seg.ts')}`, { headers: { 'x-session-id': 'sess-1', 'x-forwarded-for': '203.0.113.5' } })
      got('whole', (await res.body.arrayBuffer()).byteLength)
    }
    // A range, a HEAD and a 304: only the range's part counts. The session
    // comes from its cookie (the only cookie the log keeps).
    const ranged = await request(`${nginx.url}${signed('parts', 'seg.ts')}`, { headers: { range: 'bytes=100-1099', cookie: 'a=1; session_id_fileserver="sess-c"; b=2' } })
    got('parts', (await ranged.body.arrayBuffer()).byteLength)
    assert.equal(ranged.statusCode, 206)
    const head = await request(`${nginx.url}${signed('parts', 'seg.ts')}`, { method: 'HEAD' })
    await head.body.dump()
    const notModified = await request(`${nginx.url}${signed('parts', 'seg.ts')}`, { headers: { 'if-none-match': String(ranged.headers.etag) } })
    await notModified.body.dump()
    assert.equal(notModified.statusCode, 304)
    // A refused request counts nothing.
    const refused = await request(`${nginx.url}/seg.ts?uid=thief&expires=${LATER}&token=${'0'.repeat(64)}`)
    await refused.body.dump()
    // A download cut after 1 MiB counts what nginx sent, at least what was received.
    const cut = await request(`${nginx.url}${signed('cut', 'big.mp4')}`)
    let taken = 0
    for await (const chunk of cut.body) {
      taken += (chunk as Buffer).length
      if (taken >= 1024 * 1024) break
    }
    got('cut', taken)

    // nginx writes a line when it finishes a response: the cut one may take a moment.
    const deadline = Date.now() + 5000
    let lines = 0
    while (lines < 7 && Date.now() < deadline) {
      lines += reader.read()
      if (lines < 7) await new Promise((resolve) => setTimeout(resolve, 50))
    }
    assert.equal(lines, 7)
    await collector.flush()
    const records = new Map((await store.records()).map((r) => [r.uid, r]))
    assert.equal(records.get('whole')?.bytes, received.get('whole'))
    assert.equal(records.get('whole')?.requests, 2)
    assert.deepEqual(records.get('whole')?.sessions, ['sess-1'])
    assert.deepEqual(records.get('whole')?.ips, ['203.0.113.5'])
    assert.equal(records.get('parts')?.bytes, 1000)
    assert.deepEqual(records.get('parts')?.sessions, ['sess-c'])
    assert.equal(records.get('parts')?.requests, 1)
    assert.equal(records.has('thief'), false)
    const cutBytes = records.get('cut')?.bytes ?? 0
    assert.ok(cutBytes >= taken && cutBytes < BIG, `cut: metered ${cutBytes}, received ${taken}`)
    // Read again: nothing new, nothing counted twice.
    assert.equal(reader.read(), 0)
    await collector.close({ grace: 1 })
  })
})
