import { close, read } from 'node:fs'
import type { ServerResponse } from 'node:http'
import { OriginBodyTooLargeError } from '../../errors.ts'
import type { ByteCounter, PushedBody } from './origin.ts'

/**
 * A range of an open file, written into the client's response chunk by
 * chunk: read a chunk, write it, read the next once the socket has taken it
 * (`write()` returned true, or 'drain'). It owns the descriptor and closes it
 * when it is done, whichever way.
 *
 * Why not `fs.createReadStream` piped into the response: each chunk is a
 * round-trip through libuv's thread pool, which on a process pinned to one
 * core means two context switches, and a stream adds its own machinery and
 * reads one chunk ahead. Chunks of 256 KiB instead of a stream's 64 KiB, and
 * no stream: fewer, larger reads cost far less CPU per byte
 * (docs/performance.md#why-the-code-is-shaped-this-way), and a slow
 * client holds one chunk of memory, not a chunk plus a read-ahead.
 */
export class FileBody implements PushedBody {
  readonly #fd: number
  #position: number
  #remaining: number
  readonly #chunkSize: number
  #closed = false
  /** A read is in flight: the descriptor is closed after it, never under it (its number could be reused). */
  #reading = false

  /** `length` bytes of `fd` from `start`, read `chunkSize` bytes at a time. */
  constructor (fd: number, start: number, length: number, chunkSize: number) {
    this.#fd = fd
    this.#position = start
    this.#remaining = length
    this.#chunkSize = chunkSize
  }

  /** {@inheritDoc PushedBody.sendTo} */
  sendTo (res: ServerResponse, counter: ByteCounter): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      let settled = false
      const done = (ok: boolean): void => {
        if (settled) return
        settled = true
        res.off('close', onClose)
        res.off('finish', onFinish)
        res.off('drain', next)
        this.destroy()
        resolve(ok)
      }
      const onClose = (): void => { if (!res.writableFinished) done(false) }
      const onFinish = (): void => { done(true) }
      const next = (): void => {
        if (settled) return
        if (this.#remaining === 0) {
          res.end() // 'finish' comes after every write callback
          return
        }
        this.#readChunk((err, chunk) => {
          if (settled) return
          if (err !== null || chunk === undefined) {
            // A read error, or the file shrank under us: cut the response
            // rather than end it short of its Content-Length.
            res.destroy()
            done(false)
            return
          }
          const size = chunk.length
          const ok = res.write(chunk, (e) => { if (e == null) counter.bytes += size })
          if (ok) next()
          else res.once('drain', next)
        })
      }
      res.on('close', onClose)
      res.once('finish', onFinish)
      if (res.destroyed) done(false)
      else next()
    })
  }

  /** {@inheritDoc PushedBody.readAll} */
  readAll (limit: number): Promise<Buffer> {
    if (this.#remaining > limit) {
      this.destroy()
      return Promise.reject(new OriginBodyTooLargeError(limit))
    }
    const chunks: Buffer[] = []
    return new Promise<Buffer>((resolve, reject) => {
      const next = (): void => {
        if (this.#remaining === 0) {
          // Resolves once the descriptor is closed: a caller that counts
          // open files afterwards sees it gone.
          this.#release(() => resolve(Buffer.concat(chunks)))
          return
        }
        this.#readChunk((err, chunk) => {
          if (err !== null || chunk === undefined) {
            this.destroy()
            reject(err ?? new Error('the file shrank while it was read'))
            return
          }
          chunks.push(chunk)
          next()
        })
      }
      next()
    })
  }

  /** {@inheritDoc PushedBody.destroy} Closes the descriptor; idempotent. */
  destroy (): void {
    this.#release()
  }

  /** Close the descriptor once (after a read in flight), then call `then`. */
  #release (then?: () => void): void {
    if (this.#closed) {
      then?.()
      return
    }
    this.#closed = true
    if (this.#reading) then?.() // the read's callback closes it
    else close(this.#fd, () => then?.())
  }

  /** The next chunk; `undefined` at an unexpected end of file. */
  #readChunk (cb: (err: Error | null, chunk?: Buffer) => void): void {
    if (this.#closed) {
      cb(new Error('the file body was destroyed'))
      return
    }
    const size = Math.min(this.#chunkSize, this.#remaining)
    const buffer = Buffer.allocUnsafe(size)
    this.#reading = true
    read(this.#fd, buffer, 0, size, this.#position, (err, n) => {
      this.#reading = false
      if (this.#closed) {
        close(this.#fd, () => {})
        cb(new Error('the file body was destroyed'))
        return
      }
      if (err !== null) {
        cb(err)
        return
      }
      if (n === 0) {
        cb(null)
        return
      }
      this.#position += n
      this.#remaining -= n
      cb(null, n === size ? buffer : buffer.subarray(0, n))
    })
  }
}
