import type { ServerResponse } from 'node:http'
import { finished } from 'node:stream/promises'
import { OriginBodyTooLargeError } from '../../errors.ts'
import type { ByteCounter, PushedBody } from './origin.ts'

/**
 * A body whole in memory (a small file, a rewritten playlist), written in one
 * call and counted in its write callback as the other bodies count chunks.
 */
export class BufferBody implements PushedBody {
  readonly #buffer: Buffer

  constructor (buffer: Buffer) {
    this.#buffer = buffer
  }

  /** Its length in bytes. */
  get length (): number {
    return this.#buffer.length
  }

  /** {@inheritDoc PushedBody.sendTo} */
  async sendTo (res: ServerResponse, counter: ByteCounter): Promise<boolean> {
    if (res.destroyed) return false
    const size = this.#buffer.length
    res.write(this.#buffer, (err) => {
      if (err == null) counter.bytes += size
    })
    res.end()
    try {
      // 'finish' comes after the write callback; a premature close rejects.
      await finished(res)
      return true
    } catch {
      return false
    }
  }

  /** {@inheritDoc PushedBody.readAll} */
  async readAll (limit: number): Promise<Buffer> {
    if (this.#buffer.length > limit) throw new OriginBodyTooLargeError(limit)
    return this.#buffer
  }

  /** Nothing to release. */
  destroy (): void {}
}
