import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { request } from 'undici'
import { meteredBytes, startTestServer } from '../helpers/test-server.ts'
import type { TestServer } from '../helpers/test-server.ts'

const SECRET = 'test-signing-secret'
const root = mkdtempSync(join(tmpdir(), 'sm-signed-'))
mkdirSync(join(root, 'vod', 'clip one'), { recursive: true })
writeFileSync(join(root, 'vod', 'clip one', 'seg 1.ts'), Buffer.alloc(5000, 7))
after(() => rmSync(root, { recursive: true, force: true }))

function mac (uid: string, path: string, expires: number): Buffer {
  return createHmac('sha256', SECRET).update(`${uid}:${path}:${expires}`).digest()
}

describe('signed URLs', () => {
  let server: TestServer
  before(async () => { server = await startTestServer({ root, signingSecret: SECRET }) })
  after(() => server.close())

  const path = 'vod/clip one/seg 1.ts'
  const target = '/vod/clip%20one/seg%201.ts'
  const now = (): number => Math.floor(Date.now() / 1000)
  async function status (query: string): Promise<{ status: number, code?: string }> {
    const res = await request(`${server.url}${target}?${query}`)
    const text = await res.body.text()
    return { status: res.statusCode, code: res.statusCode >= 400 ? JSON.parse(text).error.code : undefined }
  }

  it('hex and unpadded base64url tokens are accepted', async () => {
    const e = now() + 60
    assert.equal((await status(`uid=alice&expires=${e}&token=${mac('alice', path, e).toString('hex')}`)).status, 200)
    assert.equal((await status(`uid=alice&expires=${e}&token=${mac('alice', path, e).toString('base64url')}`)).status, 200)
    assert.equal((await meteredBytes(server)).get('alice'), 10_000)
  })

  it('a missing or bad token is 403', async () => {
    const e = now() + 60
    const good = mac('alice', path, e).toString('hex')
    for (const q of [
      '', 'uid=alice', `uid=alice&expires=${e}`,
      `uid=alice&expires=${e}&token=${'0'.repeat(64)}`,
      `uid=mallory&expires=${e}&token=${good}`,
      `uid=alice&expires=${e + 1}&token=${good}`,
      `uid=alice&expires=${e}&token=${good.slice(0, 63)}`,
      `uid=alice&expires=${e}&token=${good.toUpperCase()}Z`,
      `uid=alice&expires=${e}&token=${mac('alice', 'vod/other.ts', e).toString('hex')}`
    ]) {
      assert.deepEqual(await status(q), { status: 403, code: 'SM_ERR_BAD_SIGNATURE' }, q)
    }
  })

  it('an expired but valid token is 410; an expired bad token is 403', async () => {
    const e = now() - 10
    assert.deepEqual(await status(`uid=alice&expires=${e}&token=${mac('alice', path, e).toString('hex')}`), { status: 410, code: 'SM_ERR_URL_EXPIRED' })
    assert.deepEqual(await status(`uid=alice&expires=${e}&token=${'ab'.repeat(32)}`), { status: 403, code: 'SM_ERR_BAD_SIGNATURE' })
  })
})
