import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { signedQuery } from '../../src/server/access/url-signer.ts'
import { runFfmpeg } from '../helpers/counting-relay.ts'
import { meteredBytes, startTestServer } from '../helpers/test-server.ts'
import type { TestServer } from '../helpers/test-server.ts'

const SECRET = 'ffmpeg-test-secret'
const media = new URL('../../examples/media', import.meta.url).pathname
const out = mkdtempSync(join(tmpdir(), 'sm-ffmpeg-'))
after(() => rmSync(out, { recursive: true, force: true }))

function probeSeconds (file: string): number {
  return Number(execFileSync('ffprobe', ['-v', 'error', '-show_entries', 'format=duration', '-of', 'csv=p=0', file], { encoding: 'utf8' }).trim())
}

describe('ffmpeg as a real HLS client through the proxy (signed URLs)', () => {
  let server: TestServer
  before(async () => { server = await startTestServer({ root: media, signingSecret: SECRET }) })
  after(() => server.close())

  const master = (uid: string): string => {
    const expires = Math.floor(Date.now() / 1000) + 600
    return `${server.url}/master.m3u8?${signedQuery({ secret: SECRET, uid, path: 'master.m3u8', expires })}`
  }

  // The master lists plain TS, AES-128 TS and fMP4; ffmpeg makes one program per variant.
  for (const [name, program] of [['plain', 0], ['AES-128 encrypted', 1]] as const) {
    it(`ffmpeg -i <signed master> -c copy out.ts exits 0 for the ${name} variant`, async () => {
      const file = join(out, `${program}.ts`)
      const r = await runFfmpeg(['-i', master(`ff-${program}`), '-map', `0:p:${program}`, '-c', 'copy', '-y', file])
      assert.equal(r.code, 0, r.stderr)
      assert.ok(statSync(file).size > 100_000)
      const seconds = probeSeconds(file)
      assert.ok(seconds > 7.5 && seconds < 8.5, `duration ${seconds}`)
      assert.ok(((await meteredBytes(server)).get(`ff-${program}`) ?? 0) > 250_000)
    })
  }

  it('a tampered master URL is refused and ffmpeg fails', async () => {
    const r = await runFfmpeg(['-i', master('ff-x').replace(/token=[0-9a-f]/, 'token=z'), '-c', 'copy', '-f', 'null', '-'])
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /403/)
  })
})
