import { Pool, errors } from 'undici'
import {
  ConfigError, NotFoundError, OriginError, OriginTimeoutError, OriginUnreachableError, RangeNotSatisfiableError,
  ShuttingDownError, StreammeterError
} from '../../errors.ts'
import { VERSION } from '../../version.ts'
import { isMultiRange, parseContentRange } from './byte-range.ts'
import { DispatchedResponse } from './dispatched-response.ts'
import type { ResponseHead } from './dispatched-response.ts'
import { xForwardedFor, xForwardedProto } from './forwarding.ts'
import { contentTypeOf, fileTypeOf } from './media-types.ts'
import type { Origin, OriginRequest, OriginResponse } from './origin.ts'
import { OriginQuery } from './origin-query.ts'
import { passedHeaders } from './origin-response-headers.ts'
import { firstValue } from '../header-value.ts'

/** Settings of {@link HttpOrigin}. */
export interface HttpOriginOptions {
  /**
   * `ORIGIN_URL`: the http(s) base URL. A request for `a/b.ts` goes to
   * `<base path>/a/b.ts`, the base path taken as a directory whether or not
   * it ends in `/`. A query on the base URL is sent with every request (an
   * origin access key, say), followed by the client's query less
   * streammeter's own parameters (see origin-query.ts for how the two
   * combine). User info becomes `Authorization: Basic`.
   */
  baseUrl: string
  /**
   * `ORIGIN_TIMEOUT`: seconds from asking to the origin's headers, a wait
   * for a free connection included; past it, 504. Connecting and then
   * answering each have it too.
   */
  timeout: number
  /**
   * `ORIGIN_MAX_CONNECTIONS`: most connections open to the origin
   * (docs/limits.md#the-origin). Beyond them requests wait in undici's
   * queue, each for at most `timeout`: what waits is bounded by the
   * timeout and the arrival rate, never by memory alone. A download holds
   * its connection for its whole length, so size it to the concurrent
   * transfers expected.
   * @default 256
   */
  connections?: number | undefined
  /**
   * `ORIGIN_HOST_HEADER`: the `Host` sent instead of the base URL's own
   * (`host[:port]`), for an origin that serves several virtual hosts. Over
   * https it is also the TLS server name, so the origin's certificate must
   * be valid for it.
   * @default the base URL's host
   */
  hostHeader?: string | undefined
  /**
   * Seconds the origin may go silent in the middle of a body. Time the body
   * sits paused because the client reads slowly does not count (undici
   * stops the timer while paused), so a player with a full buffer is safe.
   * @default 30
   */
  bodyTimeout?: number | undefined
}

/** `ORIGIN_MAX_CONNECTIONS`'s default (docs/limits.md#the-origin). */
const DEFAULT_CONNECTIONS = 256
/** Request fields forwarded unless the fetch is `whole`. */
const CONDITIONAL = ['range', 'if-range', 'if-none-match', 'if-modified-since'] as const
/** Most body bytes read and dropped to keep a connection after a HEAD, a 304 or an error status. */
const DRAIN_MAX = 64 * 1024
/** Network failures that mean "could not reach it" (502) rather than "it failed" (502 too, different code). */
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EHOSTUNREACH', 'EHOSTDOWN', 'ENETUNREACH', 'ENETDOWN', 'EPIPE',
  'ECONNABORTED', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED'
])

/**
 * Fetches from an HTTP(S) origin (`ORIGIN_URL`, docs/access.md#requests) over a keep-alive
 * undici pool of at most `connections`. To the origin go Range and
 * conditional headers, `User-Agent`, `X-Forwarded-For`/`-Proto`
 * (forwarding.ts), its own `Host` (or `hostHeader`) and the client's query
 * less streammeter's parameters (origin-query.ts); from it come its
 * end-to-end response fields (origin-response-headers.ts). The origin's
 * status is mapped: 200/206/304 pass, 404/410 → NotFoundError, 416 →
 * RangeNotSatisfiableError, anything else → OriginError; network failures
 * → OriginUnreachableError or OriginTimeoutError. The origin's own message
 * never reaches an error message: the original goes in `cause`.
 *
 * HEAD goes to the origin as HEAD. undici closes the connection after one
 * (undici#258: some servers send a body anyway, which would poison the next
 * response); players rarely send HEAD, so that safety is kept.
 *
 * `If-Match` and `If-Unmodified-Since` are not forwarded: they answer 412,
 * which has no error of its own yet, and a client that sent them is best
 * served by the current representation.
 */
export class HttpOrigin implements Origin {
  readonly kind = 'http'
  readonly #pool: Pool
  readonly #basePath: string
  readonly #query: OriginQuery
  readonly #authorization: string | undefined
  readonly #host: string | undefined
  readonly #timeoutMs: number
  /**
   * Whether every connection is busy: the pool's last `dispatch()` said so
   * (false = "busy until 'drain'", undici's Dispatcher contract) and no
   * 'drain' came since. A request dispatched then waits in the pool's queue,
   * where undici runs no timer (its connect and headers timers start once a
   * connection takes the request), so it gets one of ours. Only then: a
   * timer per request would cost every request for the rare queued one.
   */
  #saturated = false
  #closing: Promise<void> | undefined

  constructor (options: HttpOriginOptions) {
    let base: URL
    try {
      base = new URL(options.baseUrl)
    } catch {
      throw new ConfigError('ORIGIN_URL', 'is not a URL')
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new ConfigError('ORIGIN_URL', 'must be an http or https URL')
    this.#basePath = base.pathname.endsWith('/') ? base.pathname : base.pathname + '/'
    this.#query = new OriginQuery(base.search)
    this.#authorization = base.username !== '' || base.password !== ''
      ? 'Basic ' + Buffer.from(`${decodeURIComponent(base.username)}:${decodeURIComponent(base.password)}`).toString('base64')
      : undefined
    this.#host = options.hostHeader
    this.#timeoutMs = Math.max(1, Math.round(options.timeout * 1000))
    this.#pool = new Pool(base.origin, {
      connections: options.connections ?? DEFAULT_CONNECTIONS,
      // Connecting, then the headers, each within the timeout; a request
      // that waits for a connection first has a timer of its own (fetch).
      connectTimeout: this.#timeoutMs,
      headersTimeout: this.#timeoutMs,
      bodyTimeout: Math.max(1, Math.round((options.bodyTimeout ?? 30) * 1000)),
      keepAliveTimeout: 4_000
    })
    this.#pool.on('drain', () => { this.#saturated = false })
  }

  /**
   * {@inheritDoc Origin.fetch}
   * The abort function handed to `onAbortable` aborts the origin request
   * (its socket closed) and, before the headers, makes this reject.
   */
  async fetch (request: OriginRequest): Promise<OriginResponse> {
    if (this.#closing !== undefined) throw new ShuttingDownError()
    const whole = request.whole === true
    const headers = this.#requestHeaders(request, whole)

    // undici's dispatch() with a handler of our own: the body goes from
    // undici's parser into the client's response without a Readable in
    // between (see DispatchedResponse). The deadline is undici's own connect
    // and headers timers, plus ours for a request that waits for a
    // connection; the abort handed to the caller ends the request for its
    // whole life, body included.
    const response = new DispatchedResponse()
    let aborted: Error | undefined
    request.onAbortable?.((reason) => {
      aborted ??= reason
      response.abort(reason)
    })
    const queued = this.#saturated
    this.#saturated = !this.#pool.dispatch({
      path: this.#basePath + request.path.split('/').map(encodeURIComponent).join('/') + this.#query.for(request.query),
      method: request.method,
      headers
    }, response)
    // ORIGIN_TIMEOUT counts from here for a request that waits for a connection.
    const deadline = queued ? setTimeout(queuedTooLong, this.#timeoutMs, response) : undefined
    let head: ResponseHead
    try {
      head = await response.head
    } catch (err) {
      if (aborted !== undefined) throw aborted
      throw classify(err, this.#closing !== undefined)
    } finally {
      clearTimeout(deadline)
    }

    // Read and drop what body there is (none for HEAD and 304, a short one
    // for an error) before answering: only then is the connection back in
    // the pool for the next request. Bounded by the size limit, bodyTimeout
    // and the caller's abort.
    let answer: OriginResponse
    try {
      answer = this.#answer(request, head, headers, response)
    } catch (err) {
      await response.drain(DRAIN_MAX)
      throw err
    }
    if (answer.body === null) await response.drain(DRAIN_MAX)
    return answer
  }

  /** Close the pool once in-flight requests are done. Idempotent. */
  async close (): Promise<void> {
    this.#closing ??= this.#pool.close()
    await this.#closing
  }

  #requestHeaders (request: OriginRequest, whole: boolean): Record<string, string> {
    const h = request.headers
    // Identity only: bytes are metered as sent and playlists are rewritten,
    // both of which need the plain representation; a range of a gzip
    // representation would be a range of other bytes (RFC 9110 §8.4.1); and
    // media segments are compressed already.
    const out: Record<string, string> = {
      'accept-encoding': 'identity',
      'user-agent': h['user-agent'] ?? `streammeter/${VERSION}`
    }
    if (this.#authorization !== undefined) out.authorization = this.#authorization
    if (this.#host !== undefined) out.host = this.#host
    const who = request.client
    if (who !== undefined) {
      const chain = xForwardedFor(who)
      if (chain !== undefined) out['x-forwarded-for'] = chain
      out['x-forwarded-proto'] = xForwardedProto(who)
    }
    if (!whole) {
      for (const name of CONDITIONAL) {
        const value = h[name]
        if (value !== undefined) out[name] = value
      }
      if (isMultiRange(out.range)) {
        delete out.range
        delete out['if-range']
      }
    }
    return out
  }

  #answer (request: OriginRequest, res: ResponseHead, sent: Record<string, string>, body: DispatchedResponse): OriginResponse {
    const status = res.statusCode
    const ranged = sent.range !== undefined
    const conditional = sent['if-none-match'] !== undefined || sent['if-modified-since'] !== undefined
    if (status === 404 || status === 410) throw new NotFoundError()
    if (status === 416 && ranged) {
      const cr = parseContentRange(firstValue(res.headers['content-range']))
      throw new RangeNotSatisfiableError(cr?.kind === 'unsatisfied' ? cr.size : undefined)
    }
    // A 206 we did not ask for, or a 304 to an unconditional request, would
    // be passed on as a lie: the client would take a part for the whole.
    const usable = status === 200 || (status === 206 && ranged) || (status === 304 && conditional)
    if (!usable) throw new OriginError(undefined, { cause: new OriginStatus(status) })

    const headers = passedHeaders(res.headers, fileTypeOf(request.path))
    headers['content-type'] ??= contentTypeOf(request.path)
    if (status === 304) {
      delete headers['content-length']
      delete headers['content-type']
      return { status, headers, body: null, length: 0 }
    }
    const declared = headers['content-length']
    const length = declared !== undefined && /^\d+$/.test(declared) ? Number(declared) : undefined
    if (request.method === 'HEAD') return { status, headers, body: null, length }
    return { status, headers, body, length }
  }
}

/** The `cause` of an OriginError for an unusable status: the status only, never the body. */
class OriginStatus extends Error {
  readonly statusCode: number
  constructor (statusCode: number) {
    super(`origin answered HTTP ${statusCode}`)
    this.name = 'OriginStatus'
    this.statusCode = statusCode
  }
}

/** A request still waiting for a connection when ORIGIN_TIMEOUT is up: 504, and it never goes out. */
function queuedTooLong (response: DispatchedResponse): void {
  response.abort(new OriginTimeoutError({ cause: new Error('no origin connection came free within ORIGIN_TIMEOUT') }))
}

/** Map an undici/network failure to a gateway error; the original stays in `cause`. */
function classify (err: unknown, closing: boolean): StreammeterError {
  if (err instanceof StreammeterError) return err
  if (err instanceof errors.HeadersTimeoutError || err instanceof errors.ConnectTimeoutError) {
    return new OriginTimeoutError({ cause: err })
  }
  if (closing || err instanceof errors.ClientClosedError || err instanceof errors.ClientDestroyedError) return new ShuttingDownError()
  for (let e = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code
    if (code === 'ETIMEDOUT') return new OriginTimeoutError({ cause: err })
    if (typeof code === 'string' && UNREACHABLE_CODES.has(code)) return new OriginUnreachableError({ cause: err })
  }
  return new OriginError(undefined, { cause: err })
}
