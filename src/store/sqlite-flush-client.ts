import { randomUUID } from 'node:crypto'
import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { StoreError } from '../errors.ts'
import type { FlushResult, LogCursor, UsageDelta, UsagePolicy } from '../meter/index.ts'

/** What the thread is started with. */
export interface FlushThreadData {
  path: string
  policy: UsagePolicy
}

/** One flush asked of the thread; `token` is recorded with it in the same transaction. */
export interface FlushRequest {
  id: number
  token: string
  deltas: readonly UsageDelta[]
  cursor: LogCursor | undefined
}

/** A failure as it crosses to the caller's thread: message, and the cause's name, message and code. */
export interface ThreadError {
  message: string
  cause?: { name: string, message: string, code: unknown } | undefined
}

/** The thread's answer to a {@link FlushRequest}. */
export type FlushReply = { id: number, result: FlushResult } | { id: number, error: ThreadError }

/** `err` as a {@link ThreadError}. */
export function threadError (err: unknown): ThreadError {
  if (!(err instanceof Error)) return { message: String(err) }
  const cause = err.cause instanceof Error ? err.cause : undefined
  return {
    message: err.message,
    cause: cause === undefined ? undefined : { name: cause.name, message: cause.message, code: (cause as { code?: unknown }).code }
  }
}

/** A {@link ThreadError} back as the StoreError it was, with an Error standing for its cause. */
function storeError (e: ThreadError): StoreError {
  if (e.cause === undefined) return new StoreError(e.message)
  const cause = Object.assign(new Error(e.cause.message), { name: e.cause.name, code: e.cause.code })
  return new StoreError(e.message, { cause })
}

/** The last flush the thread committed, as recorded in its transaction. */
export interface MarkedFlush {
  token: string
  result: FlushResult
}

/** A {@link MarkedFlush} from its `meta` row (undefined: none, or unreadable). */
export function parseMarkedFlush (value: unknown): MarkedFlush | undefined {
  if (typeof value !== 'string') return undefined
  try {
    return JSON.parse(value) as MarkedFlush
  } catch {
    return undefined
  }
}

interface Pending {
  token: string
  resolve: (result: FlushResult) => void
  reject: (err: Error) => void
}

/**
 * The SQLite store's flushes, run on a worker thread with a connection of
 * its own (sqlite-flush-thread.ts), so that writing each second's deltas
 * (thousands of rows under load) never holds the event loop
 * (docs/architecture.md#the-sqlite-flush-thread). Started at the first flush;
 * until it has opened its connection the caller flushes itself. It keeps
 * the process alive only while a flush is in flight.
 *
 * Nothing is counted twice or lost when the thread fails: each flush records
 * a token of its own in its transaction, and the thread runs one flush at a
 * time. When the thread stops with flushes in flight, the one whose token is
 * the last recorded committed (it resolves with its recorded result); the
 * others did not, and reject, so that the collector keeps their deltas and
 * tries again. After a failure {@link flush} returns undefined and the store
 * flushes on its own connection.
 */
export class SqliteFlushThread {
  readonly #data: FlushThreadData
  readonly #committed: () => MarkedFlush | undefined
  readonly #threadUrl: URL | undefined
  #worker: Worker | undefined
  /** The thread has opened its connection: flushes go to it from now on. */
  #ready = false
  #readyWaiters: Array<(ready: boolean) => void> = []
  #failed = false
  #closing: Promise<void> | undefined
  #nextId = 1
  readonly #pending = new Map<number, Pending>()

  /**
   * @param committed - reads the last {@link MarkedFlush} on the caller's own connection
   * @param threadUrl - the thread's module (tests); sqlite-flush-thread next to this one by default
   */
  constructor (path: string, policy: UsagePolicy, committed: () => MarkedFlush | undefined, threadUrl?: URL) {
    this.#data = { path, policy }
    this.#committed = committed
    this.#threadUrl = threadUrl
  }

  /**
   * Flush on the thread; undefined when the thread is not usable: not
   * started yet (this starts it), still opening its connection, failed or
   * closing. The caller then flushes itself, so a flush never waits for the
   * thread to start (a worker takes from tens of milliseconds to a second).
   */
  flush (deltas: readonly UsageDelta[], cursor: LogCursor | undefined): Promise<FlushResult> | undefined {
    if (this.#failed || this.#closing !== undefined) return undefined
    const worker = this.#worker ?? this.#start()
    if (!this.#ready) return undefined
    const id = this.#nextId++
    const token = randomUUID()
    return new Promise<FlushResult>((resolve, reject) => {
      this.#pending.set(id, { token, resolve, reject })
      if (this.#pending.size === 1) worker.ref()
      // Copied to the thread (structured clone): 8 ms for 4,000 deltas, 17 ms for 10,000,
      // the only part of a flush left on the event loop (JSON measured the same).
      worker.postMessage({ id, token, deltas, cursor } satisfies FlushRequest)
    })
  }

  /** Start the thread if need be; resolves true once flushes go to it, false if they never will. */
  async ready (): Promise<boolean> {
    if (this.#failed || this.#closing !== undefined) return false
    if (this.#worker === undefined) this.#start()
    if (this.#ready) return true
    return await new Promise<boolean>((resolve) => { this.#readyWaiters.push(resolve) })
  }

  /** Let the flushes in flight finish, then stop the thread. Idempotent. */
  async close (): Promise<void> {
    this.#wake(false)
    const worker = this.#worker
    this.#closing ??= worker === undefined || this.#failed
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
        worker.once('exit', () => { resolve() })
        worker.ref()
        worker.postMessage('close')
      })
    await this.#closing
  }

  #start (): Worker {
    // The thread's module sits next to this one, under the same extension:
    // `.js` from dist/, or `.ts` run through tsx, whose loader a worker does
    // not inherit on Node 20, so it is registered there first.
    const thread = this.#threadUrl ?? new URL(`./sqlite-flush-thread${extname(fileURLToPath(import.meta.url))}`, import.meta.url)
    const ext = extname(fileURLToPath(thread))
    // A young generation of 4 MiB instead of V8's 48: the thread's garbage is one flush's
    // deltas at a time, and the default costs 7 MiB more of resident memory (docs/performance.md).
    const options = { workerData: this.#data, resourceLimits: { maxYoungGenerationSizeMb: 4 } }
    const worker = ext === '.ts'
      ? new Worker(`import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((tsx) => { tsx.register(); return import(${JSON.stringify(thread.href)}) })`, { eval: true, ...options })
      : new Worker(thread, options)
    worker.unref()
    worker.on('message', (reply: FlushReply | 'ready') => {
      if (reply === 'ready') {
        this.#ready = true
        this.#wake(true)
        return
      }
      const pending = this.#pending.get(reply.id)
      if (pending === undefined) return
      this.#settled(reply.id)
      if ('result' in reply) pending.resolve(reply.result)
      else pending.reject(storeError(reply.error))
    })
    worker.on('error', (err) => { this.#fail(err) })
    worker.on('exit', (code) => {
      if (this.#closing === undefined || this.#pending.size > 0) this.#fail(new Error(`it exited with code ${code}`))
    })
    this.#worker = worker
    return worker
  }

  #settled (id: number): void {
    this.#pending.delete(id)
    if (this.#pending.size === 0 && this.#closing === undefined) this.#worker?.unref()
  }

  #wake (ready: boolean): void {
    for (const waiter of this.#readyWaiters.splice(0)) waiter(ready)
  }

  /** The thread stopped: settle what was in flight by what the file says, and flush in-thread from now on. */
  #fail (err: Error): void {
    if (this.#failed) return
    this.#failed = true
    this.#wake(false)
    let committed: MarkedFlush | undefined
    try {
      committed = this.#committed()
    } catch {
      committed = undefined
    }
    for (const [id, pending] of this.#pending) {
      this.#settled(id)
      if (committed?.token === pending.token) pending.resolve(committed.result)
      else pending.reject(new StoreError(`sqlite store flush failed: the flush thread stopped (${err.message})`, { cause: err }))
    }
    this.#worker?.terminate().catch(() => {})
  }
}
