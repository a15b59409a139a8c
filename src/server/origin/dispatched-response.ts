import type { IncomingHttpHeaders, ServerResponse } from 'node:http'
import type { Dispatcher } from 'undici'
import { OriginBodyTooLargeError } from '../../errors.ts'
import type { ByteCounter, PushedBody } from './origin.ts'

/** What the origin answered before its body. */
export interface ResponseHead {
  statusCode: number
  headers: IncomingHttpHeaders
}

/**
 * Body bytes held in memory while nobody consumes the body yet (between the
 * headers and `sendTo`/`readAll`); past this the origin socket is paused.
 * One socket read is at most 64 KiB.
 */
const HOLD_MAX = 64 * 1024

/** Who consumes the body: nobody yet, the client, a whole read, or a drain that throws it away. */
type Mode = 'held' | 'send' | 'read' | 'drain'

/**
 * One origin request made with undici's `dispatch()` and this object as its
 * handler, so that body chunks go from undici's parser straight into the
 * client's `ServerResponse`: no `Readable`, no async iterator and no promise
 * per chunk in between, which costs far less CPU per request than
 * `Pool.request()` with `for await` over its body
 * (docs/performance.md#why-the-code-is-shaped-this-way).
 *
 * Backpressure: when `res.write()` returns false the origin socket is paused
 * (undici stops reading it, and its body timer does not run while paused)
 * and resumed on 'drain'. Until a consumer arrives, up to {@link HOLD_MAX}
 * bytes are held (a small body usually arrives with its headers, in one
 * socket read), then the socket is paused.
 */
export class DispatchedResponse implements Dispatcher.DispatchHandler, PushedBody {
  readonly head: Promise<ResponseHead>
  #resolveHead!: (head: ResponseHead) => void
  #rejectHead!: (err: unknown) => void
  #headSettled = false
  #controller: Dispatcher.DispatchController | undefined
  #abortReason: Error | undefined
  #mode: Mode = 'held'
  #held: Buffer[] = []
  #heldBytes = 0
  #ended = false
  #error: Error | undefined
  /** Called once the body is done in the current mode (send: true = whole body handed over). */
  #settle: ((ok: boolean) => void) | undefined
  #fail: ((err: unknown) => void) | undefined
  #res: ServerResponse | undefined
  #counter: ByteCounter | undefined
  #readLimit = 0

  constructor () {
    this.head = new Promise<ResponseHead>((resolve, reject) => {
      this.#resolveHead = resolve
      this.#rejectHead = reject
    })
  }

  /**
   * Abort the origin request (before or after the headers). Idempotent.
   * Before a connection took the request (it waits in the pool's queue, or
   * for its connection), undici calls nothing yet: the head rejects now with
   * `reason`, and the request is aborted as soon as it starts.
   */
  abort (reason: Error): void {
    if (this.#controller !== undefined) {
      if (!this.#controller.aborted) this.#controller.abort(reason)
      return
    }
    this.#abortReason ??= reason
    if (!this.#headSettled) {
      this.#headSettled = true
      this.#error = reason
      this.#rejectHead(reason)
    }
  }

  // --- undici's handler interface

  onRequestStart (controller: Dispatcher.DispatchController): void {
    this.#controller = controller
    if (this.#abortReason !== undefined) controller.abort(this.#abortReason)
  }

  onResponseStart (_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    if (statusCode < 200) return // 1xx: informational, the real head follows
    this.#headSettled = true
    this.#resolveHead({ statusCode, headers })
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    // undici's parser hands over empty chunks too, many on a large body
    // (docs/performance.md#why-the-code-is-shaped-this-way):
    // nothing to write or count.
    if (chunk.length === 0) return
    switch (this.#mode) {
      case 'send': {
        const counter = this.#counter as ByteCounter
        const size = chunk.length
        const ok = (this.#res as ServerResponse).write(chunk, (err) => {
          if (err == null) counter.bytes += size
        })
        if (!ok) controller.pause()
        return
      }
      case 'held':
        this.#held.push(chunk)
        this.#heldBytes += chunk.length
        if (this.#heldBytes >= HOLD_MAX) controller.pause()
        return
      case 'read':
        this.#heldBytes += chunk.length
        if (this.#heldBytes > this.#readLimit) {
          const err = new OriginBodyTooLargeError(this.#readLimit)
          this.#fail?.(err)
          controller.abort(err)
          return
        }
        this.#held.push(chunk)
        return
      case 'drain':
        this.#heldBytes += chunk.length
        if (this.#heldBytes > this.#readLimit) {
          controller.abort(new OriginBodyTooLargeError(this.#readLimit))
          this.#settle?.(false)
        }
    }
  }

  onResponseEnd (): void {
    this.#ended = true
    switch (this.#mode) {
      case 'send': (this.#res as ServerResponse).end(); return // 'finish' settles
      case 'read': this.#settle?.(true); return
      case 'drain': this.#settle?.(true)
    }
  }

  onResponseError (_controller: Dispatcher.DispatchController, err: Error): void {
    this.#error = err
    if (!this.#headSettled) {
      this.#headSettled = true
      this.#rejectHead(err)
      return
    }
    switch (this.#mode) {
      case 'send': {
        const res = this.#res as ServerResponse
        // The origin failed mid-body: cut the client's response rather than
        // end it short, so that the client sees a truncated download.
        if (!res.destroyed) res.destroy()
        this.#settle?.(false)
        return
      }
      case 'read': this.#fail?.(err); return
      case 'drain': this.#settle?.(false)
    }
  }

  // --- PushedBody

  /** {@inheritDoc PushedBody.sendTo} */
  sendTo (res: ServerResponse, counter: ByteCounter): Promise<boolean> {
    this.#mode = 'send'
    this.#res = res
    this.#counter = counter
    if (res.destroyed) {
      this.abort(new Error('the client went away'))
      return Promise.resolve(false)
    }
    return new Promise<boolean>((resolve) => {
      const done = (ok: boolean): void => {
        this.#settle = undefined
        res.off('close', onClose)
        res.off('drain', onDrain)
        res.off('finish', onFinish)
        resolve(ok)
      }
      const onClose = (): void => {
        if (res.writableFinished) return
        this.abort(new Error('the client went away'))
        done(false)
      }
      const onDrain = (): void => { this.#controller?.resume() }
      const onFinish = (): void => { done(true) }
      this.#settle = done
      res.on('close', onClose)
      res.on('drain', onDrain)
      res.once('finish', onFinish)

      let ok = true
      for (const chunk of this.#held) {
        const size = chunk.length
        ok = res.write(chunk, (err) => {
          if (err == null) counter.bytes += size
        })
      }
      this.#held = []
      this.#heldBytes = 0
      if (this.#error !== undefined) {
        if (!res.destroyed) res.destroy()
        done(false)
      } else if (this.#ended) {
        res.end()
      } else if (ok) {
        this.#controller?.resume()
      }
    })
  }

  /** {@inheritDoc PushedBody.readAll} */
  readAll (limit: number): Promise<Buffer> {
    this.#mode = 'read'
    this.#readLimit = limit
    if (this.#heldBytes > limit) {
      this.abort(new OriginBodyTooLargeError(limit))
      return Promise.reject(new OriginBodyTooLargeError(limit))
    }
    return new Promise<Buffer>((resolve, reject) => {
      this.#settle = () => resolve(Buffer.concat(this.#held))
      this.#fail = reject
      if (this.#error !== undefined) reject(this.#error)
      else if (this.#ended) resolve(Buffer.concat(this.#held))
      else this.#controller?.resume()
    })
  }

  /**
   * Read and drop the body, up to `limit` bytes (more aborts the request):
   * a finished response puts its connection back in the pool. Never rejects.
   */
  drain (limit: number): Promise<void> {
    this.#mode = 'drain'
    this.#readLimit = limit
    this.#held = []
    if (this.#heldBytes > limit) {
      this.abort(new OriginBodyTooLargeError(limit))
      return Promise.resolve()
    }
    return new Promise<void>((resolve) => {
      this.#settle = () => resolve()
      if (this.#ended || this.#error !== undefined) resolve()
      else this.#controller?.resume()
    })
  }

  /** {@inheritDoc PushedBody.destroy} */
  destroy (): void {
    this.#held = []
    if (!this.#ended && this.#error === undefined) this.abort(new Error('the body is not wanted'))
  }
}
