import type { IncomingMessage, ServerResponse } from 'node:http'

/**
 * The metering the Node peers do, so that they are compared with
 * streammeter doing comparable work: the body bytes of each response,
 * counted as they are written, added to the request's `uid` (query
 * parameter, not verified) when the response finishes. No store, no
 * reports: the simplest metering a Node proxy could have.
 */
export class UsageCounter {
  readonly #bytes = new Map<string, number>()
  #responses = 0

  /** Count what `res` writes for the uid of `req`. */
  watch (req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? ''
    const q = url.indexOf('?')
    const uid = q < 0 ? null : new URLSearchParams(url.slice(q + 1)).get('uid')
    if (uid === null || uid === '') return
    let sent = 0
    // Wrapping write/end is how the proxy libraries' piping can be observed
    // without patching them: both pipe the upstream body into `res`.
    const write = res.write
    const end = res.end
    res.write = function (this: ServerResponse, chunk: unknown, ...rest: unknown[]): boolean {
      sent += sizeOf(chunk, rest[0])
      return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest)
    } as typeof res.write
    res.end = function (this: ServerResponse, chunk?: unknown, ...rest: unknown[]): ServerResponse {
      if (typeof chunk !== 'function') sent += sizeOf(chunk, rest[0])
      return (end as (...a: unknown[]) => ServerResponse).call(this, chunk, ...rest)
    } as typeof res.end
    res.once('finish', () => {
      this.#responses++
      this.#bytes.set(uid, (this.#bytes.get(uid) ?? 0) + sent)
    })
  }

  /** Totals, for the line printed on exit. */
  summary (): { uids: number, responses: number, bytes: number } {
    let bytes = 0
    for (const b of this.#bytes.values()) bytes += b
    return { uids: this.#bytes.size, responses: this.#responses, bytes }
  }
}

function sizeOf (chunk: unknown, encoding: unknown): number {
  if (typeof chunk === 'string') return Buffer.byteLength(chunk, typeof encoding === 'string' ? encoding as BufferEncoding : 'utf8')
  if (chunk instanceof Uint8Array) return chunk.byteLength
  return 0
}

/** Where a peer listens and what it proxies to, from its environment. */
export function peerSettings (): { origin: string, port: number, host: string } {
  const origin = process.env.PEER_ORIGIN_URL
  const port = Number(process.env.PEER_PORT)
  if (origin === undefined || !Number.isInteger(port)) throw new Error('set PEER_ORIGIN_URL and PEER_PORT')
  return { origin, port, host: process.env.PEER_HOST ?? '127.0.0.1' }
}

/** On SIGTERM/SIGINT: close, print what was counted, exit 0. */
export function stopOnSignal (name: string, counter: UsageCounter, close: () => Promise<void>): void {
  const stop = (): void => {
    close().finally(() => {
      const s = counter.summary()
      process.stderr.write(`${name}: counted ${s.bytes} bytes in ${s.responses} responses for ${s.uids} uids\n`)
      process.exit(0)
    })
  }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
}
