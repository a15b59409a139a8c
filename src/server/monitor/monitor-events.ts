import type { IncomingMessage, ServerResponse } from 'node:http'
import { StreammeterError } from '../../errors.ts'
import type { MonitorSnapshot } from './monitor-snapshot.ts'

/** Options of {@link MonitorEvents}. */
export interface MonitorEventsOptions {
  /** Time between two `snapshot` events, in ms (at most 2 s: docs/dashboard.md#tests). @default 1000 */
  intervalMs?: number
  /** Time between two heartbeat comments, in ms. @default 15000 */
  heartbeatMs?: number
  /** Seconds of throughput history each periodic event repeats (the page drops what it has). @default 10 */
  tailSeconds?: number
}

/** Builds one document; `historyAfter` limits the throughput samples (unix seconds). */
export type SnapshotBuilder = (historyAfter?: number) => Promise<MonitorSnapshot>

interface Viewer {
  res: ServerResponse
  /** The socket buffer is full: skip events until it drains. */
  waiting: boolean
}

/**
 * The dashboard's live feed: Server-Sent Events (text/event-stream, WHATWG
 * HTML §9.2) on `/monitor/api/events`. A viewer gets the whole document
 * (with the 15-minute history) at once, then one `snapshot` event per
 * interval with the last seconds of history, and a comment line as a
 * heartbeat so that idle proxies keep the connection open.
 *
 * One document is built per interval whatever the number of viewers, and
 * none at all without viewers: the timer runs only while someone watches.
 * A slow viewer is skipped until its socket drains rather than buffered.
 * {@link close} ends every stream, so an open dashboard never holds up a
 * graceful shutdown.
 */
export class MonitorEvents {
  readonly #build: SnapshotBuilder
  readonly #intervalMs: number
  readonly #heartbeatMs: number
  readonly #tailSeconds: number
  readonly #viewers = new Set<Viewer>()
  #tick: NodeJS.Timeout | undefined
  #heartbeat: NodeJS.Timeout | undefined
  #building = false
  #closed = false

  constructor (build: SnapshotBuilder, options: MonitorEventsOptions = {}) {
    this.#build = build
    this.#intervalMs = options.intervalMs ?? 1000
    this.#heartbeatMs = options.heartbeatMs ?? 15_000
    this.#tailSeconds = options.tailSeconds ?? 10
  }

  /** Open streams. */
  get viewers (): number {
    return this.#viewers.size
  }

  /** True while the periodic timer runs (only with at least one viewer). */
  get running (): boolean {
    return this.#tick !== undefined
  }

  /**
   * Turn a request into an event stream: headers now, the whole document as
   * soon as it is built, then periodic events until the client hangs up or
   * {@link close} is called.
   */
  attach (req: IncomingMessage, res: ServerResponse, headers: Record<string, string>): void {
    res.writeHead(this.#closed ? 503 : 200, {
      ...headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      // A stream the server ends on shutdown must also end its connection.
      connection: 'close',
      // Reverse proxies such as nginx buffer responses unless told not to.
      'x-accel-buffering': 'no'
    })
    if (this.#closed) {
      res.end()
      return
    }
    const viewer: Viewer = { res, waiting: false }
    this.#viewers.add(viewer)
    res.on('drain', () => { viewer.waiting = false })
    res.once('close', () => this.#drop(viewer))
    req.socket.setNoDelay(true)
    // How long an EventSource waits before reconnecting after a cut.
    this.#send(viewer, 'retry: 2000\n\n')
    this.#build()
      .then((doc) => this.#send(viewer, event('snapshot', doc)), (err: unknown) => this.#send(viewer, failure(err)))
      .catch(() => {})
    this.#schedule()
  }

  /** End every stream and refuse new ones (they get 503). Idempotent. */
  close (): void {
    this.#closed = true
    this.#stop()
    for (const viewer of this.#viewers) viewer.res.end()
    this.#viewers.clear()
  }

  #drop (viewer: Viewer): void {
    this.#viewers.delete(viewer)
    if (this.#viewers.size === 0) this.#stop()
  }

  #schedule (): void {
    if (this.#closed || this.#tick !== undefined) return
    this.#tick = setInterval(() => { this.#broadcast() }, this.#intervalMs)
    this.#heartbeat = setInterval(() => {
      for (const viewer of this.#viewers) this.#send(viewer, ': heartbeat\n\n')
    }, this.#heartbeatMs)
  }

  #stop (): void {
    clearInterval(this.#tick)
    clearInterval(this.#heartbeat)
    this.#tick = undefined
    this.#heartbeat = undefined
  }

  #broadcast (): void {
    // A build slower than the interval (a slow store) is not overlapped by the next.
    if (this.#building || this.#viewers.size === 0) return
    this.#building = true
    this.#build(Date.now() / 1000 - this.#tailSeconds)
      .then((doc) => event('snapshot', doc), failure)
      .then((text) => {
        for (const viewer of this.#viewers) this.#send(viewer, text)
      })
      .finally(() => { this.#building = false })
      .catch(() => {})
  }

  #send (viewer: Viewer, text: string): void {
    if (viewer.waiting || viewer.res.destroyed || viewer.res.writableEnded) return
    if (!viewer.res.write(text)) viewer.waiting = true
  }
}

function event (name: string, data: unknown): string {
  // JSON has no raw newline, so the document is one `data:` line.
  return `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`
}

/** A `failure` event: the error's code only (a message may carry a connection string). */
function failure (err: unknown): string {
  return event('failure', { error: err instanceof StreammeterError ? err.code : 'SM_ERR_INTERNAL' })
}
