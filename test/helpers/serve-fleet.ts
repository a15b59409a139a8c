/**
 * Several `streammeter serve` processes on one Redis prefix, as a deployment
 * runs them, plus what tests do with them: download through one (counting
 * the bytes the client actually received), read its `/traffic`, stop it.
 */
import type { TestContext } from 'node:test'
import { request } from 'undici'
import type { TrafficStatus } from '../../src/meter/index.ts'
import { startCliServer } from './cli-server.ts'
import type { CliServer } from './cli-server.ts'
import { REDIS_URL, deletePrefix } from './redis.ts'

/**
 * Start `n` servers in parallel, all with `env` plus the shared store
 * (`STORE_URL` = the test Redis, `STORE_PREFIX` = `prefix`). When the test
 * ends, every process still running is killed, then the prefix's keys are
 * deleted (last: a process still alive would write them again).
 */
export async function startFleet (t: TestContext, n: number, prefix: string, env: Record<string, string>): Promise<CliServer[]> {
  const started = await Promise.allSettled(Array.from({ length: n }, () =>
    startCliServer({ STORE_URL: REDIS_URL, STORE_PREFIX: prefix, ...env })))
  const servers = started.flatMap((s) => s.status === 'fulfilled' ? [s.value] : [])
  t.after(async () => {
    for (const s of servers) if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL')
    await Promise.all(servers.map((s) => s.exited))
    await deletePrefix(prefix)
  })
  const failed = started.find((s) => s.status === 'rejected')
  if (failed !== undefined) throw failed.reason
  return servers
}

/** `GET /traffic` of one server (loopback: no token needed). */
export async function trafficOf (server: CliServer): Promise<TrafficStatus> {
  const res = await request(`${server.url}/traffic`, { reset: true })
  if (res.statusCode !== 200) throw new Error(`/traffic answered ${res.statusCode}: ${await res.body.text()}`)
  return await res.body.json() as TrafficStatus
}

/** What one download got: the status and the body bytes the client received. */
export interface Download {
  status: number
  bytes: number
}

/**
 * GET `path` through `server`, reading the whole body and counting its bytes
 * as they arrive. The connection is closed after the response, so that a
 * graceful stop does not wait for idle keep-alive clients to hang up.
 */
export async function download (server: CliServer, path: string, headers: Record<string, string> = {}): Promise<Download> {
  const res = await request(`${server.url}${path}`, { headers, reset: true })
  let bytes = 0
  for await (const chunk of res.body as AsyncIterable<Buffer>) bytes += chunk.length
  return { status: res.statusCode, bytes }
}

/** SIGTERM, then the exit code once the process has stopped (fails after `timeoutMs`). */
export async function stopGracefully (server: CliServer, timeoutMs = 15_000): Promise<number | null> {
  server.child.kill('SIGTERM')
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`server did not stop within ${timeoutMs} ms:\n${server.output()}`)), timeoutMs)
  })
  try {
    return await Promise.race([server.exited, late])
  } finally {
    clearTimeout(timer)
  }
}
