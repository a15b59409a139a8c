import { connect } from 'node:net'

/** The status and raw text of an answer to a hand-written request. */
export interface RawAnswer {
  status: number
  head: string
  body: string
}

/**
 * Send `request` as-is over a new TCP connection (so that no client library
 * normalises the target) and read until the server closes it. The request
 * should carry `Connection: close`.
 */
export function rawRequest (port: number, request: string | Buffer, timeoutMs = 5000): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error('no answer in time'))
    }, timeoutMs)
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', () => {}) // a reset after the answer is fine
    socket.on('close', () => {
      clearTimeout(timer)
      const text = Buffer.concat(chunks).toString('latin1')
      const split = text.indexOf('\r\n\r\n')
      const head = split === -1 ? text : text.slice(0, split)
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0)
      resolve({ status, head, body: split === -1 ? '' : text.slice(split + 4) })
    })
    socket.write(request)
  })
}

/** A GET with `Connection: close` for a raw target. */
export function rawGet (port: number, target: string, extraHeaders = ''): Promise<RawAnswer> {
  return rawRequest(port, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${extraHeaders}Connection: close\r\n\r\n`)
}
