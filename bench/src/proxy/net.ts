import { request } from 'node:http'
import { createServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { isRunning, logTail } from './processes.ts'
import type { Managed } from './processes.ts'

/**
 * A TCP port free on 127.0.0.1 right now. Another program could take it
 * before our server binds it; on this benchmark's quiet loopback that has
 * not been worth a retry loop, and a clash fails the start loudly.
 */
export async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => { resolve() }))
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

/** GET `url` once; resolves the status and body (small answers only), rejects on a connection error. */
export function httpGet (url: string, timeoutMs = 5_000): Promise<{ status: number, body: string }> {
  return new Promise((resolve, reject) => {
    // agent: false: a fresh connection, not kept (these are control requests).
    const req = request(url, { agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => { chunks.push(c) })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }) })
      res.on('error', reject)
    })
    req.on('timeout', () => { req.destroy(new Error(`GET ${url} timed out`)) })
    req.on('error', reject)
    req.end()
  })
}

/**
 * Wait until GET `url` answers 200, failing early (with the end of its log)
 * if `proc` exits, and after `timeoutMs` otherwise. A Node server compiled
 * through tsx on a busy pinned core can take several seconds to listen.
 */
export async function waitForHttp (url: string, proc: Managed, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last = ''
  while (Date.now() < deadline) {
    if (!isRunning(proc)) {
      const exit = await proc.exited
      throw new Error(`${proc.name} exited (code ${String(exit.code)}, signal ${String(exit.signal)}) before it answered ${url}\n${logTail(proc)}`)
    }
    try {
      const { status } = await httpGet(url, 2_000)
      if (status === 200) return
      last = `status ${status}`
    } catch (err) {
      last = err instanceof Error ? err.message : String(err)
    }
    await sleep(100)
  }
  throw new Error(`${proc.name} did not answer ${url} within ${timeoutMs} ms (last: ${last})\n${logTail(proc)}`)
}
