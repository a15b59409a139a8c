import { Agent, errors, request } from 'undici'
import { ReportNetworkError, ReportRejectedError, ReportTimeoutError } from '../errors.ts'
import type { StreammeterError } from '../errors.ts'
import { VERSION } from '../version.ts'
import { retryAfterMs } from './backoff.ts'
import type { OutboxEntry } from './types.ts'

/** Outcome of one delivery attempt. */
export type DeliveryOutcome =
  | { ok: true, status: number }
  | {
    ok: false
    /** The endpoint's HTTP status, when it answered. */
    status?: number | undefined
    error: StreammeterError
    /** What the endpoint's `Retry-After` asked for, in ms (the reporter caps it). */
    retryAfterMs?: number | undefined
  }

/** Sends one report once. The collector's reporter decides about retries. */
export interface ReportTransport {
  send (entry: OutboxEntry, now: number, signal?: AbortSignal): Promise<DeliveryOutcome>
  close (): Promise<void>
}

/** Settings of {@link HttpReportTransport}. */
export interface HttpTransportOptions {
  url: string
  /** Sent as `Authorization: Bearer`; never logged. */
  apiKey?: string | undefined
  /** Seconds one attempt may take, headers and body. */
  timeout: number
}

/**
 * POSTs reports with undici over a keep-alive pool (docs/report-format.md,
 * "Request"): any 2xx, and 409 ("already have it"), is success; everything
 * else is a failure, with the status and any `Retry-After`, for the caller
 * to retry, split or park.
 */
export class HttpReportTransport implements ReportTransport {
  readonly #url: string
  readonly #auth: string | undefined
  readonly #timeoutMs: number
  readonly #agent: Agent

  constructor (options: HttpTransportOptions) {
    this.#url = options.url
    this.#auth = options.apiKey !== undefined && options.apiKey !== '' ? `Bearer ${options.apiKey}` : undefined
    this.#timeoutMs = Math.max(1, Math.round(options.timeout * 1000))
    this.#agent = new Agent({
      connections: 2,
      headersTimeout: this.#timeoutMs,
      bodyTimeout: this.#timeoutMs,
      connectTimeout: Math.min(this.#timeoutMs, 10_000),
      keepAliveTimeout: 4_000
    })
  }

  async send (entry: OutboxEntry, now: number, signal?: AbortSignal): Promise<DeliveryOutcome> {
    const timeout = AbortSignal.timeout(this.#timeoutMs)
    const combined = signal === undefined ? timeout : AbortSignal.any([signal, timeout])
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'user-agent': `streammeter/${VERSION}`,
      'x-report-time': String(Math.floor(now / 1000)),
      'idempotency-key': entry.reportId
    }
    if (this.#auth !== undefined) headers.authorization = this.#auth
    try {
      const res = await request(this.#url, {
        method: 'POST',
        headers,
        body: entry.body,
        dispatcher: this.#agent,
        signal: combined
      })
      // Read and drop the answer so the connection goes back to the pool.
      await res.body.dump({ limit: 1 << 16 }).catch(() => {})
      if ((res.statusCode >= 200 && res.statusCode < 300) || res.statusCode === 409) {
        return { ok: true, status: res.statusCode }
      }
      return { ok: false, status: res.statusCode, error: new ReportRejectedError(res.statusCode), retryAfterMs: retryAfterMs(res.headers['retry-after'], now) }
    } catch (err) {
      return { ok: false, error: classify(err, this.#timeoutMs / 1000, timeout.aborted) }
    }
  }

  async close (): Promise<void> {
    await this.#agent.close()
  }
}

/** Map an undici/network failure to a secret-free error (no URL, no header). */
function classify (err: unknown, timeoutSeconds: number, timedOut: boolean): StreammeterError {
  if (timedOut || err instanceof errors.HeadersTimeoutError || err instanceof errors.BodyTimeoutError ||
    (err instanceof Error && err.name === 'TimeoutError')) {
    return new ReportTimeoutError(timeoutSeconds, { cause: err })
  }
  if (err instanceof errors.ConnectTimeoutError) return new ReportNetworkError('connect timeout', { cause: err })
  if (err instanceof Error && err.name === 'AbortError') return new ReportNetworkError('aborted', { cause: err })
  const code = findCode(err)
  return new ReportNetworkError(code ?? 'connection failed', { cause: err })
}

function findCode (err: unknown): string | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string' && /^E[A-Z_]+$/.test(code)) return code
  }
  return undefined
}
