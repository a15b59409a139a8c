import { once } from 'node:events'
import { createServer } from 'node:http'
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

/** One request as the origin received it. */
export interface Received {
  method: string
  url: string
  headers: IncomingHttpHeaders
}

/** A real HTTP origin on 127.0.0.1 that records what it receives and how many requests it holds at once. */
export interface RecordingOrigin {
  /** `http://127.0.0.1:<port>` */
  url: string
  port: number
  received: Received[]
  /** Most requests in progress at the same time so far. */
  maxConcurrent: () => number
  close: () => Promise<void>
}

/**
 * Start an origin whose answers `handle` writes; every request is recorded
 * first. `handle` may answer later (slow origins); a request counts as in
 * progress until its response closes.
 */
export async function startRecordingOrigin (handle: (req: IncomingMessage, res: ServerResponse) => void): Promise<RecordingOrigin> {
  const received: Received[] = []
  let current = 0
  let most = 0
  const server = createServer((req, res) => {
    received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers })
    most = Math.max(most, ++current)
    res.on('close', () => { current-- })
    handle(req, res)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    received,
    maxConcurrent: () => most,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  }
}
