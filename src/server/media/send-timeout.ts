import type { Socket } from 'node:net'
import type { Transfer, TransferRegistry } from './transfers.ts'

/** Options of {@link SendTimeout}. */
export interface SendTimeoutOptions {
  /** `SEND_TIMEOUT` in ms: how long a client may take no bytes while some wait for it. */
  timeout: number
  /** Monotonic clock in ms. @default performance.now */
  now?: (() => number) | undefined
  /** Called for each transfer cut, after its response was destroyed. */
  onTimeout?: ((transfer: Transfer) => void) | undefined
}

/**
 * Cuts clients that stop reading (docs/limits.md#requests, `SEND_TIMEOUT`): a transfer
 * whose socket holds bytes it has not handed to the kernel, and has made no
 * progress for the timeout, has its response destroyed. The media route then
 * records what the socket took, as for any client that goes away.
 *
 * The clock runs only while a write waits for the socket: when the socket
 * has taken everything (the origin is slow, a live segment is still being
 * written) nothing waits and nothing is timed. It is judged the same way on
 * every body path (the file body, the HTTP origin's dispatched body, a
 * stream, and a rewritten playlist's buffer, which can wait after `end()`).
 *
 * Why one sweep instead of a timer per blocked write: a timer armed and
 * cleared on every full socket buffer is a Timeout object and two list
 * operations per 256 KiB on a fast download, and the media route also avoids
 * per-request timers; a sweep over the live transfers, every second (a
 * quarter of the timeout when that is shorter), costs nothing per write
 * (docs/performance.md#why-the-code-is-shaped-this-way). It cuts a stalled
 * client between the timeout and the timeout plus one period.
 *
 * Progress is what Node can see of the kernel: the bytes the write callbacks
 * counted, and libuv's queue of bytes not yet written (`writeQueueSize`,
 * which shrinks on partial writes). The kernel wakes a writer only once a
 * good part of its send buffer (up to 4 MiB on Linux) has drained, so a
 * client reading slower than that part per timeout (about 20 KB/s with the
 * default 60 s) looks stalled too, as it would to nginx's `send_timeout`.
 */
export class SendTimeout {
  readonly #transfers: TransferRegistry
  readonly #timeout: number
  readonly #now: () => number
  readonly #onTimeout: ((transfer: Transfer) => void) | undefined
  #timer: NodeJS.Timeout | undefined

  constructor (transfers: TransferRegistry, options: SendTimeoutOptions) {
    this.#transfers = transfers
    this.#timeout = options.timeout
    this.#now = options.now ?? performance.now.bind(performance)
    this.#onTimeout = options.onTimeout
  }

  /** Sweep periodically until {@link stop}; the timer does not keep the process alive. Idempotent. */
  start (): void {
    if (this.#timer !== undefined) return
    const period = Math.max(10, Math.min(1000, this.#timeout / 4))
    this.#timer = setInterval(() => this.sweep(), period).unref()
  }

  /** Stop sweeping. Idempotent. */
  stop (): void {
    clearInterval(this.#timer)
    this.#timer = undefined
  }

  /** Look at every transfer once; cut those stalled for the timeout. Returns how many were cut. */
  sweep (): number {
    const now = this.#now()
    let cut = 0
    for (const t of this.#transfers.live()) {
      const socket = t.response?.socket
      if (socket == null || socket.destroyed || socket.writableLength === 0) {
        t.waitSince = -1 // nothing waits for the client
        continue
      }
      const mark = t.bytes - writeQueueSize(socket)
      if (t.waitSince < 0 || mark !== t.waitMark) {
        t.waitMark = mark
        t.waitSince = now
      } else if (now - t.waitSince >= this.#timeout) {
        // What the kernel took is what the client gets: the rest of the
        // write in flight is not metered (see Transfer.unsent).
        t.unsent = writeQueueSize(socket)
        t.response?.destroy()
        cut++
        this.#onTimeout?.(t)
      }
    }
    return cut
  }
}

/**
 * Bytes libuv holds for `socket` that the kernel has not taken yet: it
 * shrinks as a partial write goes out, which `writableLength` (whole chunks
 * until their callbacks) does not show. Internal to Node (`bufferSize` reads
 * it too); 0 where there is no such handle.
 */
function writeQueueSize (socket: Socket): number {
  return (socket as unknown as { _handle?: { writeQueueSize?: number } | null })._handle?.writeQueueSize ?? 0
}
