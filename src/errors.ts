/**
 * Every error streammeter raises on purpose. Codes are API: they are listed,
 * with the remedy, in docs/errors.md, and never change meaning.
 */

/** Stable error codes. */
export type ErrorCode =
  | 'SM_ERR_CONFIG'
  | 'SM_ERR_STORE_URL'
  | 'SM_ERR_ENGINE'
  | 'SM_ERR_STORE'
  | 'SM_ERR_STORE_CLOSED'
  | 'SM_ERR_STORE_NOT_DURABLE'
  | 'SM_ERR_COLLECTOR_STATE'
  | 'SM_ERR_REPORT_REJECTED'
  | 'SM_ERR_REPORT_TIMEOUT'
  | 'SM_ERR_REPORT_NETWORK'
  | 'SM_ERR_REPORT_NOT_PARKED'
  | 'SM_ERR_BAD_REQUEST'
  | 'SM_ERR_METHOD_NOT_ALLOWED'
  | 'SM_ERR_UNAUTHORIZED'
  | 'SM_ERR_FORBIDDEN'
  | 'SM_ERR_BAD_SIGNATURE'
  | 'SM_ERR_URL_EXPIRED'
  | 'SM_ERR_NOT_FOUND'
  | 'SM_ERR_RANGE_NOT_SATISFIABLE'
  | 'SM_ERR_ORIGIN_UNREACHABLE'
  | 'SM_ERR_ORIGIN_TIMEOUT'
  | 'SM_ERR_ORIGIN_ERROR'
  | 'SM_ERR_SHUTTING_DOWN'
  | 'SM_ERR_ACCESS_UNAVAILABLE'
  | 'SM_ERR_USE_LIMIT'
  | 'SM_ERR_REQUEST_TIMEOUT'
  | 'SM_ERR_HEADERS_TOO_LARGE'
  | 'SM_ERR_TOO_MANY_TRANSFERS'
  | 'SM_ERR_PLAYLIST_TOO_LARGE'
  | 'SM_ERR_INTERNAL'

/** Base class: a literal `code`, the HTTP status a server would answer, and `cause` when wrapping. */
export class StreammeterError<C extends ErrorCode = ErrorCode> extends Error {
  readonly code: C
  readonly statusCode: number

  constructor (code: C, message: string, statusCode = 500, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
    this.code = code
    this.statusCode = statusCode
  }
}

/** A setting is unknown or invalid; the message names the setting. */
export class ConfigError extends StreammeterError<'SM_ERR_CONFIG'> {
  readonly setting: string
  constructor (setting: string, message: string) {
    super('SM_ERR_CONFIG', `${setting}: ${message}`, 500)
    this.setting = setting
  }
}

/**
 * The nginx engine cannot run: nginx or its js module is missing, its
 * configuration is refused, or it does not start. The message says which,
 * and names the Debian packages when something is not installed.
 */
export class EngineError extends StreammeterError<'SM_ERR_ENGINE'> {
  /** nginx or its js module is not installed: a problem of the host's setup (exit 2), not of a run. */
  readonly missing: boolean
  constructor (message: string, options?: { cause?: unknown, missing?: boolean }) {
    super('SM_ERR_ENGINE', message, 500, options)
    this.missing = options?.missing ?? false
  }
}

/** `STORE_URL` names no store this build knows. */
export class StoreUrlError extends StreammeterError<'SM_ERR_STORE_URL'> {
  constructor (message: string) {
    super('SM_ERR_STORE_URL', message, 500)
  }
}

/** The store failed an operation (disk full, corrupt file, connection lost…). */
export class StoreError extends StreammeterError<'SM_ERR_STORE'> {
  constructor (message: string, options?: { cause?: unknown }) {
    super('SM_ERR_STORE', message, 503, options)
  }
}

/** An operation reached a store after its `close()`. */
export class StoreClosedError extends StreammeterError<'SM_ERR_STORE_CLOSED'> {
  constructor () {
    super('SM_ERR_STORE_CLOSED', 'the store is closed', 503)
  }
}

/**
 * The store could not confirm that the outbox's reports are durable (a
 * WAITAOF or WAIT after the seal timed out or failed): they are not handed
 * out for delivery until a later confirmation succeeds. 503.
 */
export class StoreNotDurableError extends StreammeterError<'SM_ERR_STORE_NOT_DURABLE'> {
  constructor (message: string) {
    super('SM_ERR_STORE_NOT_DURABLE', message, 503)
  }
}

/** The collector was asked for something its state does not allow (e.g. `start()` after `close()`). */
export class CollectorStateError extends StreammeterError<'SM_ERR_COLLECTOR_STATE'> {
  constructor (message: string) {
    super('SM_ERR_COLLECTOR_STATE', message, 500)
  }
}

/** The report endpoint answered with a status that is neither 2xx nor 409. */
export class ReportRejectedError extends StreammeterError<'SM_ERR_REPORT_REJECTED'> {
  readonly status: number
  constructor (status: number) {
    super('SM_ERR_REPORT_REJECTED', `report endpoint answered HTTP ${status}`, 502)
    this.status = status
  }
}

/** The report endpoint did not answer within `TRAFFIC_REPORT_TIMEOUT`. */
export class ReportTimeoutError extends StreammeterError<'SM_ERR_REPORT_TIMEOUT'> {
  constructor (timeoutSeconds: number, options?: { cause?: unknown }) {
    super('SM_ERR_REPORT_TIMEOUT', `report endpoint did not answer within ${timeoutSeconds} s`, 504, options)
  }
}

/** The report endpoint could not be reached (refused, reset, DNS…). */
export class ReportNetworkError extends StreammeterError<'SM_ERR_REPORT_NETWORK'> {
  constructor (detail: string, options?: { cause?: unknown }) {
    super('SM_ERR_REPORT_NETWORK', `report endpoint unreachable: ${detail}`, 502, options)
  }
}

/**
 * `streammeter outbox retry|drop` or `POST /api/outbox/retry` named a report
 * that is in the outbox but not parked: it is waiting for delivery already
 * (drop it anyway with `--force`). 409.
 */
export class ReportNotParkedError extends StreammeterError<'SM_ERR_REPORT_NOT_PARKED'> {
  readonly reportId: string
  constructor (reportId: string) {
    super('SM_ERR_REPORT_NOT_PARKED', `report ${reportId.slice(0, 200)} is not parked: it is waiting for delivery`, 409)
    this.reportId = reportId
  }
}

/** A request the server cannot make sense of (bad encoding, NUL byte, malformed parameter). 400. */
export class BadRequestError extends StreammeterError<'SM_ERR_BAD_REQUEST'> {
  constructor (message: string) {
    super('SM_ERR_BAD_REQUEST', message, 400)
  }
}

/** Only GET and HEAD are served (and OPTIONS for CORS preflight). 405. */
export class MethodNotAllowedError extends StreammeterError<'SM_ERR_METHOD_NOT_ALLOWED'> {
  constructor (method: string) {
    super('SM_ERR_METHOD_NOT_ALLOWED', `method ${method.slice(0, 16)} is not allowed`, 405)
  }
}

/** An admin endpoint was called without the right `ADMIN_TOKEN`. 401. */
export class UnauthorizedError extends StreammeterError<'SM_ERR_UNAUTHORIZED'> {
  constructor (message = 'a valid admin bearer token is required') {
    super('SM_ERR_UNAUTHORIZED', message, 401)
  }
}

/** An admin endpoint was called from a non-loopback address while no `ADMIN_TOKEN` is set. 403. */
export class ForbiddenError extends StreammeterError<'SM_ERR_FORBIDDEN'> {
  constructor (message = 'admin endpoints answer loopback clients only when ADMIN_TOKEN is not set') {
    super('SM_ERR_FORBIDDEN', message, 403)
  }
}

/** A media request whose signature is missing or does not verify. 403. */
export class BadSignatureError extends StreammeterError<'SM_ERR_BAD_SIGNATURE'> {
  constructor (message = 'the URL signature is missing or invalid') {
    super('SM_ERR_BAD_SIGNATURE', message, 403)
  }
}

/** A media request with a valid signature whose `expires` has passed. 410. */
export class UrlExpiredError extends StreammeterError<'SM_ERR_URL_EXPIRED'> {
  constructor () {
    super('SM_ERR_URL_EXPIRED', 'the signed URL has expired', 410)
  }
}

/** The origin has no such file. 404. */
export class NotFoundError extends StreammeterError<'SM_ERR_NOT_FOUND'> {
  constructor (message = 'not found') {
    super('SM_ERR_NOT_FOUND', message, 404)
  }
}

/** The requested range lies outside the file. 416. */
export class RangeNotSatisfiableError extends StreammeterError<'SM_ERR_RANGE_NOT_SATISFIABLE'> {
  readonly size: number | undefined
  constructor (size?: number) {
    super('SM_ERR_RANGE_NOT_SATISFIABLE', 'the requested range is not satisfiable', 416)
    this.size = size
  }
}

/** The origin could not be reached (refused, reset, DNS). 502. The original is in `cause`, never shown. */
export class OriginUnreachableError extends StreammeterError<'SM_ERR_ORIGIN_UNREACHABLE'> {
  constructor (options?: { cause?: unknown }) {
    super('SM_ERR_ORIGIN_UNREACHABLE', 'the origin could not be reached', 502, options)
  }
}

/** The origin did not answer in time. 504. */
export class OriginTimeoutError extends StreammeterError<'SM_ERR_ORIGIN_TIMEOUT'> {
  constructor (options?: { cause?: unknown }) {
    super('SM_ERR_ORIGIN_TIMEOUT', 'the origin did not answer in time', 504, options)
  }
}

/** The origin answered with a server error or something unusable. 502. */
export class OriginError extends StreammeterError<'SM_ERR_ORIGIN_ERROR'> {
  constructor (message = 'the origin failed', options?: { cause?: unknown }) {
    super('SM_ERR_ORIGIN_ERROR', message, 502, options)
  }
}

/**
 * An origin body longer than its reader takes whole (a playlist over the
 * rewrite limit); the request is aborted. 502 with the code of {@link OriginError}.
 */
export class OriginBodyTooLargeError extends OriginError {
  constructor (limit: number) {
    super(`the origin body is longer than ${limit} bytes`)
  }
}

/** The server is draining for shutdown and takes no new requests. 503. */
export class ShuttingDownError extends StreammeterError<'SM_ERR_SHUTTING_DOWN'> {
  constructor () {
    super('SM_ERR_SHUTTING_DOWN', 'the server is shutting down', 503)
  }
}

/**
 * The request needs the store to be let in (a session, a grant, a use
 * limit) and the store cannot answer: refused, never let through. 503.
 */
export class AccessUnavailableError extends StreammeterError<'SM_ERR_ACCESS_UNAVAILABLE'> {
  constructor (options?: { cause?: unknown }) {
    super('SM_ERR_ACCESS_UNAVAILABLE', 'access cannot be checked right now: the store does not answer', 503, options)
  }
}

/** A key file or playlist URL was used as often as `KEY_MAX_USES` or `PLAYLIST_MAX_USES` allows. 403. */
export class UseLimitError extends StreammeterError<'SM_ERR_USE_LIMIT'> {
  constructor (limit: number) {
    super('SM_ERR_USE_LIMIT', `this URL has been used ${limit} time${limit === 1 ? '' : 's'}, as often as it may be`, 403)
  }
}

/** A request's headers did not arrive within the headers timeout (30 s; slowloris). 408, then the connection is closed. */
export class RequestTimeoutError extends StreammeterError<'SM_ERR_REQUEST_TIMEOUT'> {
  constructor () {
    super('SM_ERR_REQUEST_TIMEOUT', 'the request headers did not arrive in time', 408)
  }
}

/** A request's headers are larger than the server reads (Node's limit, 16 KiB). 431. */
export class HeadersTooLargeError extends StreammeterError<'SM_ERR_HEADERS_TOO_LARGE'> {
  constructor () {
    super('SM_ERR_HEADERS_TOO_LARGE', 'the request headers are too large', 431)
  }
}

/** The client IP already has `MAX_TRANSFERS_PER_IP` media responses in flight. 429. */
export class TooManyTransfersError extends StreammeterError<'SM_ERR_TOO_MANY_TRANSFERS'> {
  constructor (limit: number) {
    super('SM_ERR_TOO_MANY_TRANSFERS', `too many concurrent media requests from this address (at most ${limit})`, 429)
  }
}

/**
 * The origin's playlist is longer than `PLAYLIST_MAX_BYTES`, so it is not
 * rewritten (nor served unrewritten: its children would carry no token). 502.
 */
export class PlaylistTooLargeError extends StreammeterError<'SM_ERR_PLAYLIST_TOO_LARGE'> {
  constructor (limit: number, options?: { cause?: unknown }) {
    super('SM_ERR_PLAYLIST_TOO_LARGE', `the origin playlist is larger than ${limit} bytes, the most that is rewritten`, 502, options)
  }
}

/** Anything unexpected. 500, with a generic message; the original is logged, never shown. */
export class InternalError extends StreammeterError<'SM_ERR_INTERNAL'> {
  constructor (options?: { cause?: unknown }) {
    super('SM_ERR_INTERNAL', 'internal error', 500, options)
  }
}

/** The JSON error body of every error answer (docs/errors.md, "HTTP errors"): `{ error: { code, message } }`. */
export function errorBody (err: StreammeterError): { error: { code: ErrorCode, message: string } } {
  return { error: { code: err.code, message: err.message } }
}
