/**
 * Every error streammeter raises on purpose. Codes are API: they are listed,
 * with the remedy, in docs/errors.md, and never change meaning.
 */

/** Stable error codes. */
export type ErrorCode =
  | 'SM_ERR_CONFIG'
  | 'SM_ERR_STORE_URL'
  | 'SM_ERR_STORE'
  | 'SM_ERR_STORE_CLOSED'
  | 'SM_ERR_COLLECTOR_STATE'
  | 'SM_ERR_REPORT_REJECTED'
  | 'SM_ERR_REPORT_TIMEOUT'
  | 'SM_ERR_REPORT_NETWORK'

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
