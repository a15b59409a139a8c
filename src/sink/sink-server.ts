import type { AddressInfo } from 'node:net'
import Database from 'better-sqlite3'
import Fastify from 'fastify'
import { BearerToken } from '../bearer-token.ts'
import { BadRequestError, StreammeterError } from '../errors.ts'
import type { ErrorCode } from '../errors.ts'

/** What {@link startSink} listens on and how it checks reports. */
export interface SinkOptions {
  /** TCP port; 0 takes a free one. @default 9090 */
  port?: number | undefined
  /** @default '127.0.0.1' */
  host?: string | undefined
  /** When set, a report must carry `Authorization: Bearer <apiKey>` (else 401). @default undefined */
  apiKey?: string | undefined
  /** SQLite file the reports are kept in; `:memory:` forgets them on close. @default ':memory:' */
  db?: string | undefined
  /** Largest report body accepted, in bytes (5000 uids ≈ 2 MB). @default 16777216 */
  bodyLimit?: number | undefined
  /** Called for every report accepted (new or duplicate), e.g. to print a line. */
  onReport?: ((event: SinkReportEvent) => void) | undefined
  /** Milliseconds since the epoch, for `received_at`. @default Date.now */
  now?: (() => number) | undefined
}

/** One accepted POST. */
export interface SinkReportEvent {
  reportId: string
  /** The `Idempotency-Key` was seen before (with the same body): nothing stored. */
  duplicate: boolean
  uids: number
  bytes: number
}

/** A listening sink. */
export interface RunningSink {
  /** Base URL, e.g. `http://127.0.0.1:9090`; reports may be POSTed to any path under it. */
  readonly url: string
  /** Stop listening and close the database. Idempotent. */
  close (): Promise<void>
}

/** One row of `GET /reports`. */
export interface StoredReport {
  report_id: string
  idempotency_key: string
  /** ISO 8601, UTC. */
  received_at: string
  /** The path the report was POSTed to. */
  path: string
  /** The report as received (parsed JSON). */
  body: unknown
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS reports (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  idempotency_key TEXT NOT NULL UNIQUE,
  report_id TEXT NOT NULL,
  received_at TEXT NOT NULL,
  path TEXT NOT NULL,
  body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS usage (
  report_seq INTEGER NOT NULL REFERENCES reports (seq),
  uid TEXT NOT NULL,
  total_bytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_by_uid ON usage (uid);
`

/** The parsed body with the exact text it came from (a retry must repeat it byte for byte). */
interface RawJson {
  text: string
  value: unknown
}

/**
 * The reference report receiver (docs/report-format.md; `streammeter sink`
 * in docs/configuration.md): checks the key, keeps each `Idempotency-Key`
 * once, and answers `GET /totals` and `GET /reports`. Good for development,
 * tests and as a starting point for a real receiver.
 */
export async function startSink (options: SinkOptions = {}): Promise<RunningSink> {
  const now = options.now ?? Date.now
  const db = new Database(options.db ?? ':memory:')
  db.pragma('journal_mode = WAL')
  db.exec(SCHEMA)
  const findByKey = db.prepare<[string], { body: string }>('SELECT body FROM reports WHERE idempotency_key = ?')
  const insertReport = db.prepare<[string, string, string, string, string]>(
    'INSERT INTO reports (idempotency_key, report_id, received_at, path, body) VALUES (?, ?, ?, ?, ?)')
  const insertUsage = db.prepare<[number | bigint, string, number]>('INSERT INTO usage (report_seq, uid, total_bytes) VALUES (?, ?, ?)')
  const totals = db.prepare<[], { uid: string, total: number }>('SELECT uid, SUM(total_bytes) AS total FROM usage GROUP BY uid ORDER BY uid')
  const reports = db.prepare<[], { idempotency_key: string, report_id: string, received_at: string, path: string, body: string }>(
    'SELECT idempotency_key, report_id, received_at, path, body FROM reports ORDER BY seq')

  /** Stores a report unless its key is known; one transaction, so a crash keeps all of it or nothing. */
  const accept = db.transaction((key: string, report: ValidReport, path: string, text: string): 'new' | 'duplicate' | 'conflict' => {
    const known = findByKey.get(key)
    if (known !== undefined) return known.body === text ? 'duplicate' : 'conflict'
    const { lastInsertRowid } = insertReport.run(key, report.report_id, new Date(now()).toISOString(), path, text)
    for (const d of report.traffic_details) insertUsage.run(lastInsertRowid, d.uid, d.total_bytes)
    return 'new'
  })

  const key = options.apiKey === undefined ? undefined : new BearerToken(options.apiKey)
  const app = Fastify({ logger: false, bodyLimit: options.bodyLimit ?? 16 * 1024 * 1024 })

  app.removeAllContentTypeParsers()
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const text = body as string
    try {
      done(null, { text, value: JSON.parse(text) } satisfies RawJson)
    } catch {
      done(new BadRequestError('the body is not valid JSON'), undefined)
    }
  })

  app.addHook('onRequest', async (req, reply) => {
    // Checked before the body is read: an unauthenticated client cannot make
    // the sink parse 16 MB.
    if (req.method !== 'POST' || key === undefined) return
    if (!key.matches(req.headers.authorization)) {
      return reply.header('www-authenticate', 'Bearer').code(401)
        .send(errorBody('SM_ERR_UNAUTHORIZED', 'a valid bearer token (the sink\'s API key) is required'))
    }
  })

  app.post('/*', (req, reply) => {
    const raw = req.body as RawJson | undefined
    if (raw === undefined) throw new BadRequestError('a JSON report body is required')
    const report = validateReport(raw.value)
    const header = req.headers['idempotency-key']
    if (header !== undefined && header !== report.report_id) {
      throw new BadRequestError('Idempotency-Key does not match the body\'s report_id')
    }
    const outcome = accept(report.report_id, report, req.url.split('?')[0] ?? '/', raw.text)
    if (outcome === 'conflict') {
      // The reporter must resend a report byte for byte (docs/report-format.md,
      // "Request"); a changed body under a known key is a bug worth failing
      // loudly on (the draft IETF Idempotency-Key header answers 422 for it).
      throw new StreammeterError('SM_ERR_BAD_REQUEST', 'this Idempotency-Key was already received with a different body', 422)
    }
    let bytes = 0
    for (const d of report.traffic_details) bytes += d.total_bytes
    options.onReport?.({ reportId: report.report_id, duplicate: outcome === 'duplicate', uids: report.traffic_details.length, bytes })
    // A repeat answers 200, not 409: both are success for streammeter's
    // reporter, but 200 also is for reporters (like the original service's)
    // that only count 2xx, and for generic HTTP tooling that logs 4xx as errors.
    return reply.code(200).send({ ok: true, duplicate: outcome === 'duplicate', report_id: report.report_id })
  })

  app.get('/totals', (_req, reply) => {
    // Uids are any string: in a plain object, assigning `__proto__` sets the
    // prototype instead of a key and the uid vanishes. fromEntries defines
    // own properties, and without a prototype no key is special.
    const out = Object.setPrototypeOf(Object.fromEntries(totals.all().map((row) => [row.uid, row.total])), null) as Record<string, number>
    return reply.send(out)
  })

  app.get('/reports', (_req, reply) => {
    const out: StoredReport[] = reports.all().map((r) => ({
      report_id: r.report_id,
      idempotency_key: r.idempotency_key,
      received_at: r.received_at,
      path: r.path,
      body: JSON.parse(r.body) as unknown
    }))
    return reply.send(out)
  })

  app.setNotFoundHandler((_req, reply) => {
    return reply.code(404).send(errorBody('SM_ERR_NOT_FOUND', 'POST a report to any path; GET /totals or /reports'))
  })

  app.setErrorHandler((err: { statusCode?: number, code?: string, message?: string }, _req, reply) => {
    if (err instanceof StreammeterError) return reply.code(err.statusCode).send(errorBody(err.code, err.message))
    const status = typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500
    // Fastify's own client errors (413 too large, 415 not JSON) are safe to
    // describe; anything else is ours and stays generic.
    return status === 500
      ? reply.code(500).send(errorBody('SM_ERR_INTERNAL', 'internal error'))
      : reply.code(status).send(errorBody('SM_ERR_BAD_REQUEST', err.message ?? 'bad request'))
  })

  try {
    await app.listen({ port: options.port ?? 9090, host: options.host ?? '127.0.0.1' })
  } catch (err) {
    db.close()
    throw err
  }
  const { address, port } = app.server.address() as AddressInfo
  const url = `http://${address.includes(':') ? `[${address}]` : address}:${port}`

  let closing: Promise<void> | undefined
  return {
    url,
    close () {
      closing ??= app.close().finally(() => db.close())
      return closing
    }
  }
}

/** A report with what the sink relies on checked. */
interface ValidReport {
  report_id: string
  traffic_details: Array<{ uid: string, total_bytes: number }>
}

/** Minimal checks (docs/report-format.md): the fields the totals and the deduplication use. @throws {BadRequestError} */
function validateReport (value: unknown): ValidReport {
  const bad = (message: string): BadRequestError => new BadRequestError(message)
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad('the body must be a JSON object')
  const { report_id: reportId, traffic_details: details } = value as Record<string, unknown>
  if (typeof reportId !== 'string' || reportId === '') throw bad('report_id must be a non-empty string')
  if (!Array.isArray(details)) throw bad('traffic_details must be an array')
  details.forEach((d: unknown, i) => {
    const entry = (typeof d === 'object' && d !== null ? d : {}) as Record<string, unknown>
    if (typeof entry['uid'] !== 'string' || entry['uid'] === '') throw bad(`traffic_details[${i}].uid must be a non-empty string`)
    const bytes = entry['total_bytes']
    if (typeof bytes !== 'number' || !Number.isSafeInteger(bytes) || bytes < 0) {
      throw bad(`traffic_details[${i}].total_bytes must be a non-negative integer`)
    }
  })
  return value as ValidReport
}

function errorBody (code: ErrorCode, message: string): { error: { code: ErrorCode, message: string } } {
  return { error: { code, message } }
}
