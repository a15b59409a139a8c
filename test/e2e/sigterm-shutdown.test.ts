import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { it } from 'node:test'
import { Agent, request } from 'undici'
import { startCliServer } from '../helpers/cli-server.ts'
import { Receiver } from '../helpers/receiver.ts'

const MiB = 1024 * 1024

it('SIGTERM during active downloads: they finish, the process exits 0, the final report holds their bytes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sm-sigterm-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'movie.mp4'), Buffer.alloc(8 * MiB, 1))
  const receiver = await Receiver.start()
  t.after(() => receiver.close())
  const server = await startCliServer({
    ORIGIN_ROOT: dir,
    STORE_URL: `sqlite:${join(dir, 'meter.db')}`,
    TRAFFIC_REPORT_URL: receiver.url,
    TRAFFIC_REPORT_INTERVAL: '3600', // only the shutdown seals
    SHUTDOWN_GRACE: '15'
  })
  t.after(() => { server.child.kill('SIGKILL') })

  const agent = new Agent({ connections: 8 })
  t.after(() => agent.close())
  // Three readers that take the first half slowly (still streaming when
  // SIGTERM arrives), then read the rest at full speed. (A reader that is
  // slow on the very last chunk can see undici report 'other side closed'
  // when the server closes the idle connection after the response: undici
  // pauses before completing the message and treats the FIN as a cut.)
  const downloads = ['u1', 'u2', 'u3'].map(async (uid) => {
    const res = await request(`${server.url}/movie.mp4?uid=${uid}`, { dispatcher: agent })
    let got = 0
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      got += chunk.length
      if (got < 4 * MiB) await new Promise((resolve) => setTimeout(resolve, 15))
    }
    return [uid, got] as const
  })
  await new Promise((resolve) => setTimeout(resolve, 400))
  server.child.kill('SIGTERM')
  await new Promise((resolve) => setTimeout(resolve, 100))

  // New work is refused while draining: connection refused or a JSON 503.
  const late = await request(`${server.url}/movie.mp4?uid=late`, { dispatcher: new Agent() }).then(
    async (res) => { await res.body.dump(); return res.statusCode },
    () => 'refused'
  )
  assert.ok(late === 503 || late === 'refused', `late request got ${String(late)}`)

  const finished = await Promise.all(downloads)
  for (const [uid, got] of finished) assert.equal(got, 8 * MiB, `${uid} was cut`)
  assert.equal(await server.exited, 0, server.output())
  assert.deepEqual(Object.fromEntries(receiver.totals()), { u1: 8 * MiB, u2: 8 * MiB, u3: 8 * MiB })
  assert.equal(receiver.reports.length, 1)
})
