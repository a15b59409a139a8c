import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { request } from 'undici'

/**
 * An HTTP relay between a real client (ffmpeg) and the server under test that
 * counts, per uid, the body bytes it received from the server — i.e. what
 * the client side of the metered connection really got.
 */
export async function startCountingRelay (upstream: string): Promise<{ url: string, received: Map<string, number>, close: () => Promise<void> }> {
  const received = new Map<string, number>()
  const server = createServer((req, res) => {
    const uid = new URL(req.url ?? '/', 'http://x').searchParams.get('uid') ?? ''
    const headers: Record<string, string> = {}
    for (const name of ['range', 'if-none-match', 'if-modified-since', 'user-agent', 'x-session-id']) {
      const v = req.headers[name]
      if (typeof v === 'string') headers[name] = v
    }
    const controller = new AbortController()
    res.on('close', () => controller.abort())
    request(upstream + (req.url ?? '/'), { method: req.method === 'HEAD' ? 'HEAD' : 'GET', headers, signal: controller.signal })
      .then(async (up) => {
        const out: Record<string, string> = {}
        for (const name of ['content-type', 'content-length', 'content-range', 'accept-ranges', 'etag', 'last-modified']) {
          const v = up.headers[name]
          if (typeof v === 'string') out[name] = v
        }
        res.writeHead(up.statusCode, out)
        for await (const chunk of up.body as AsyncIterable<Buffer>) {
          if (up.statusCode < 400) received.set(uid, (received.get(uid) ?? 0) + chunk.length)
          if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve))
        }
        res.end()
      })
      .catch(() => res.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}

/** Run ffmpeg to completion (asynchronously: the server under test shares this process). */
export async function runFfmpeg (args: string[]): Promise<{ code: number | null, stderr: string }> {
  const { spawn } = await import('node:child_process')
  const child = spawn('ffmpeg', ['-nostdin', '-hide_banner', '-v', 'error', ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  return { code, stderr }
}
