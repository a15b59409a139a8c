import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { rawGet } from '../helpers/raw-http.ts'
import { meteredBytes, startTestServer } from '../helpers/test-server.ts'
import type { TestServer } from '../helpers/test-server.ts'

// `/.env?uid=x` used to be served (200 with the file). A path with a segment
// starting with `.` is a JSON 404 on both origins, and the origin is never asked.

const root = mkdtempSync(join(tmpdir(), 'sm-dotfiles-'))
mkdirSync(join(root, '.git'))
mkdirSync(join(root, 'v', '.cache'), { recursive: true })
writeFileSync(join(root, '.env'), 'SIGNING_SECRET=leaked\n')
writeFileSync(join(root, '.git', 'config'), '[core]\n')
writeFileSync(join(root, 'v', '.cache', 'a.ts'), 'hidden')
writeFileSync(join(root, 'v', 'a.ts'), 'visible')
after(() => rmSync(root, { recursive: true, force: true }))

const HIDDEN = ['/.env?uid=x', '/.git/config?uid=x', '/v/.cache/a.ts?uid=x', '/%2eenv?uid=x', '/v/%2Ecache/a.ts']

for (const kind of ['filesystem', 'http'] as const) {
  describe(`dotfiles from the ${kind} origin`, () => {
    let server: TestServer
    let originClose: (() => Promise<void>) | undefined
    const asked: string[] = []
    before(async () => {
      if (kind === 'http') {
        // An origin that serves anything it is asked for, and notes what.
        const origin = createServer((req, res) => {
          asked.push(req.url ?? '')
          res.end('origin body')
        })
        await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve))
        originClose = () => new Promise((resolve) => origin.close(() => resolve()))
        server = await startTestServer({ originUrl: `http://127.0.0.1:${(origin.address() as AddressInfo).port}/` })
      } else {
        server = await startTestServer({ root })
      }
    })
    after(async () => {
      await server.close()
      await originClose?.()
    })

    it('a path with a segment starting with "." is a JSON 404, before the origin is asked', async () => {
      for (const target of HIDDEN) {
        const answer = await rawGet(server.port, target)
        assert.equal(answer.status, 404, target)
        assert.deepEqual(JSON.parse(answer.body), { error: { code: 'SM_ERR_NOT_FOUND', message: 'not found' } }, target)
      }
      assert.deepEqual(asked, [])
      assert.equal((await meteredBytes(server)).get('x'), undefined)
      // Dots elsewhere in a name are ordinary.
      assert.equal((await rawGet(server.port, '/v/a.ts?uid=y')).status, 200)
    })
  })
}
