import type { ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import { finished } from 'node:stream/promises'
import { OriginBodyTooLargeError } from '../../errors.ts'
import type { ByteCounter, PushedBody } from './origin.ts'

/**
 * A `Readable` as a {@link PushedBody}, for an origin of one's own that has a
 * stream (the built-in origins push their bodies without one: a stream's
 * machinery and its promise per chunk cost CPU on every response,
 * docs/performance.md#why-the-code-is-shaped-this-way).
 */
export class ReadableBody implements PushedBody {
  readonly #stream: Readable

  constructor (stream: Readable) {
    this.#stream = stream
  }

  /**
   * {@inheritDoc PushedBody.sendTo}
   * Never holds more than the socket's high-water mark: when `write` returns
   * false the stream is not read until 'drain' (the async iterator pauses it).
   */
  async sendTo (res: ServerResponse, counter: ByteCounter): Promise<boolean> {
    const body = this.#stream
    let clientGone = false
    const onClose = (): void => {
      if (!res.writableFinished) {
        clientGone = true
        body.destroy()
      }
    }
    res.once('close', onClose)
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        if (clientGone || res.destroyed) return false
        const size = chunk.length
        const ok = res.write(chunk, (err) => {
          if (err == null) counter.bytes += size
        })
        if (!ok && !(await drained(res))) return false
      }
      if (clientGone || res.destroyed) return false
      res.end()
      // 'finish' fires once the last chunk was handed to the socket, after
      // the write callbacks of every earlier chunk; a premature close rejects.
      await finished(res)
      return !clientGone
    } catch {
      // The stream failed (or was destroyed because the client left).
      if (!res.destroyed) res.destroy()
      return false
    } finally {
      res.off('close', onClose)
    }
  }

  /** {@inheritDoc PushedBody.readAll} */
  async readAll (limit: number): Promise<Buffer> {
    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of this.#stream as AsyncIterable<Buffer>) {
      size += chunk.length
      if (size > limit) {
        this.#stream.destroy()
        throw new OriginBodyTooLargeError(limit)
      }
      chunks.push(chunk)
    }
    return Buffer.concat(chunks)
  }

  /** {@inheritDoc PushedBody.destroy} */
  destroy (): void {
    this.#stream.destroy()
  }
}

/** Wait for 'drain'; false if the response closes first. */
function drained (res: ServerResponse): Promise<boolean> {
  return new Promise((resolve) => {
    const onDrain = (): void => {
      res.off('close', onClose)
      resolve(true)
    }
    const onClose = (): void => {
      res.off('drain', onDrain)
      resolve(false)
    }
    res.once('drain', onDrain)
    res.once('close', onClose)
  })
}
