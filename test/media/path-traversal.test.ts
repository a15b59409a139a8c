import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { rawGet } from '../helpers/raw-http.ts'
import { startTestServer } from '../helpers/test-server.ts'
import type { TestServer } from '../helpers/test-server.ts'

const base = mkdtempSync(join(tmpdir(), 'sm-traversal-'))
const root = join(base, 'root')
mkdirSync(join(root, 'media'), { recursive: true })
writeFileSync(join(root, 'media', 'ok.ts'), 'inside')
writeFileSync(join(base, 'secret.txt'), 'TOP-SECRET')
symlinkSync(join(base, 'secret.txt'), join(root, 'media', 'link-out.ts'))
symlinkSync(base, join(root, 'escape-dir'))
symlinkSync(join(root, 'media', 'ok.ts'), join(root, 'media', 'link-in.ts'))
after(() => rmSync(base, { recursive: true, force: true }))

describe('path traversal never escapes ORIGIN_ROOT (raw requests over a socket)', () => {
  let server: TestServer
  before(async () => { server = await startTestServer({ root }) })
  after(() => server.close())

  const attacks = [
    '/../secret.txt',
    '/media/../../secret.txt',
    '/%2e%2e/secret.txt',
    '/media/%2e%2e/%2e%2e/secret.txt',
    '/%2E%2E%2Fsecret.txt',
    '/media%2f..%2f..%2fsecret.txt',
    '/..%2fsecret.txt',
    '/..%5csecret.txt',
    '/media\\..\\..\\secret.txt',
    '/media/ok.ts%00.ts',
    '/media/%00',
    '/media/link-out.ts',
    '/escape-dir/secret.txt',
    '/%252e%252e/secret.txt',
    '/./../secret.txt',
    '//../secret.txt',
    '/media/..;/..;/secret.txt',
    '/%c0%ae%c0%ae/secret.txt'
  ]
  for (const target of attacks) {
    it(`GET ${target} is refused`, async () => {
      const r = await rawGet(server.port, target)
      assert.ok([400, 403, 404].includes(r.status), `status ${r.status} for ${target}`)
      assert.doesNotMatch(r.body, /TOP-SECRET/)
      if (r.body !== '') assert.ok(JSON.parse(r.body).error.code.startsWith('SM_ERR_'))
    })
  }

  it('files and symlinks inside the root are served', async () => {
    assert.equal((await rawGet(server.port, '/media/ok.ts')).body, 'inside')
    assert.equal((await rawGet(server.port, '/media/link-in.ts')).body, 'inside')
  })
})
