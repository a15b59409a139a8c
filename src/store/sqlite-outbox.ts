import type Database from 'better-sqlite3'
import { checkSplit } from '../meter/index.ts'
import type {
  FailureDetail, OutboxEntry, OutboxItem, OutboxStats, RenderedReport, StoreCounters
} from '../meter/index.ts'
import { toEntry } from './sqlite-schema.ts'
import type { OutboxRow } from './sqlite-schema.ts'

type NumericCounter = { [K in keyof StoreCounters]: StoreCounters[K] extends number ? K : never }[keyof StoreCounters]

/** The counter writes of the store the outbox shares its transactions with. */
export interface OutboxCounters {
  /** Add `n` to a counter (in the caller's transaction). */
  add (counter: NumericCounter, n: number): void
  /** Set a `meta` value (`last_error`, `last_error_at`). */
  set (key: string, value: number | string): void
}

/** An {@link OutboxRow} without its body, with the body's size. */
type ItemRow = Omit<OutboxRow, 'body'> & { body_bytes: number }

/** Where a report is in the delivery order: its `ord`, or its `seq` until it has one. */
const POSITION = 'coalesce(ord, seq)'
/** Pending reports in delivery order, then parked ones by seq. */
const LISTING_ORDER = `parked_ms IS NOT NULL, CASE WHEN parked_ms IS NULL THEN ${POSITION} ELSE seq END`
const ITEM_COLUMNS = 'seq, report_id, created_ms, uids, bytes, attempts, last_error, last_attempt_ms, last_status, rejections, parked_ms, ' +
  'length(CAST(body AS BLOB)) AS body_bytes'

/**
 * The outbox of the sqlite store beyond seal and ack: the delivery order,
 * failures, parking, splits, putting back and dropping (docs/report-format.md,
 * "Refused reports"). Each write is one `BEGIN IMMEDIATE` transaction.
 *
 * The delivery order is `coalesce(ord, seq)`: a seal writes reports without
 * `ord`, so they go in creation order; the halves of a split get positions
 * between the report before and the one they replace, and a report put back
 * goes before the first pending one. Positions never exceed the largest seq
 * written, so a report sealed later always comes after them.
 */
export class SqliteOutbox {
  readonly #head
  readonly #all
  readonly #list
  readonly #stats
  readonly #byId
  readonly #itemById
  readonly #fail
  readonly #park
  readonly #insert
  readonly #delete
  readonly #before
  readonly #front
  readonly #pendingIds
  readonly #setOrd
  readonly #parkedIds
  readonly #unpark
  readonly #counters: OutboxCounters

  readonly fail: (reportId: string, error: string, now: number, detail: FailureDetail) => void
  readonly park: (reportId: string, error: string, now: number, detail: FailureDetail) => boolean
  readonly split: (reportId: string, parts: readonly RenderedReport[], error: string, now: number, detail: FailureDetail) => boolean
  readonly retry: (target: string | { all: true }) => string[]
  readonly drop: (reportId: string, force: boolean) => OutboxItem | 'not-parked' | 'unknown'

  constructor (db: Database.Database, counters: OutboxCounters) {
    this.#counters = counters
    this.#head = db.prepare<[], OutboxRow>(`SELECT * FROM outbox WHERE parked_ms IS NULL ORDER BY ${POSITION} LIMIT 1`)
    this.#all = db.prepare<[], OutboxRow>(`SELECT * FROM outbox ORDER BY ${LISTING_ORDER}`)
    this.#list = db.prepare<[], ItemRow>(`SELECT ${ITEM_COLUMNS} FROM outbox ORDER BY ${LISTING_ORDER}`)
    this.#stats = db.prepare<[], { pending: number, pendingBytes: number, oldest: number | null, parked: number, parkedBytes: number }>(`
      SELECT count(*) - count(parked_ms) AS pending,
        coalesce(sum(CASE WHEN parked_ms IS NULL THEN bytes END), 0) AS pendingBytes,
        min(CASE WHEN parked_ms IS NULL THEN created_ms END) AS oldest,
        count(parked_ms) AS parked,
        coalesce(sum(CASE WHEN parked_ms IS NOT NULL THEN bytes END), 0) AS parkedBytes
      FROM outbox`)
    this.#byId = db.prepare<[string], OutboxRow & { position: number }>(`SELECT *, ${POSITION} AS position FROM outbox WHERE report_id = ?`)
    this.#itemById = db.prepare<[string], ItemRow>(`SELECT ${ITEM_COLUMNS} FROM outbox WHERE report_id = ?`)
    this.#fail = db.prepare<[string, number, number | null, number, string]>(`
      UPDATE outbox SET attempts = attempts + 1, last_error = ?, last_attempt_ms = ?, last_status = ?, rejections = rejections + ?
      WHERE report_id = ?`)
    this.#park = db.prepare<[number, string]>('UPDATE outbox SET parked_ms = ? WHERE report_id = ?')
    this.#insert = db.prepare<[string, number, string, number, number, number]>(
      'INSERT INTO outbox (report_id, created_ms, body, uids, bytes, ord) VALUES (?, ?, ?, ?, ?, ?)')
    this.#delete = db.prepare<[string]>('DELETE FROM outbox WHERE report_id = ?')
    this.#before = db.prepare<[number], number | null>(
      `SELECT max(${POSITION}) FROM outbox WHERE parked_ms IS NULL AND ${POSITION} < ?`).pluck()
    this.#front = db.prepare<[], number | null>(`SELECT min(${POSITION}) FROM outbox WHERE parked_ms IS NULL`).pluck()
    this.#pendingIds = db.prepare<[], string>(`SELECT report_id FROM outbox WHERE parked_ms IS NULL ORDER BY ${POSITION}`).pluck()
    this.#setOrd = db.prepare<[number, string]>('UPDATE outbox SET ord = ? WHERE report_id = ?')
    this.#parkedIds = db.prepare<[], { report_id: string, seq: number }>('SELECT report_id, seq FROM outbox WHERE parked_ms IS NOT NULL ORDER BY seq')
    this.#unpark = db.prepare<[number, string]>('UPDATE outbox SET parked_ms = NULL, rejections = 0, ord = ? WHERE report_id = ?')

    this.fail = db.transaction((reportId: string, error: string, now: number, detail: FailureDetail) => {
      this.#failed(reportId, error, now, detail)
    }).immediate
    this.park = db.transaction((reportId: string, error: string, now: number, detail: FailureDetail) => this.#parkIn(reportId, error, now, detail)).immediate
    this.split = db.transaction((reportId: string, parts: readonly RenderedReport[], error: string, now: number, detail: FailureDetail) =>
      this.#splitIn(reportId, parts, error, now, detail)).immediate
    this.retry = db.transaction((target: string | { all: true }) => this.#retryIn(target)).immediate
    this.drop = db.transaction((reportId: string, force: boolean) => this.#dropIn(reportId, force)).immediate
  }

  /** The next report to deliver. */
  head (): OutboxEntry | undefined {
    const row = this.#head.get()
    return row === undefined ? undefined : toEntry(row)
  }

  /** Every entry with its body: pending in delivery order, then parked by seq. */
  all (): OutboxEntry[] {
    return this.#all.all().map(toEntry)
  }

  /** Every entry without its body, in the order of {@link all}. */
  list (): OutboxItem[] {
    return this.#list.all().map(toItem)
  }

  stats (): OutboxStats {
    const row = this.#stats.get()
    return {
      pending: row?.pending ?? 0,
      pendingBytes: row?.pendingBytes ?? 0,
      oldestCreatedAt: row?.oldest ?? undefined,
      parked: row?.parked ?? 0,
      parkedBytes: row?.parkedBytes ?? 0
    }
  }

  #failed (reportId: string, error: string, now: number, detail: FailureDetail): boolean {
    if (this.#fail.run(error, now, detail.status ?? null, detail.rejected === true ? 1 : 0, reportId).changes === 0) return false
    this.#counters.add('reports_failed', 1)
    this.#counters.set('last_error', error)
    this.#counters.set('last_error_at', now)
    return true
  }

  #parkIn (reportId: string, error: string, now: number, detail: FailureDetail): boolean {
    const row = this.#byId.get(reportId)
    if (row === undefined || row.parked_ms !== null) return false
    this.#failed(reportId, error, now, { ...detail, rejected: true })
    this.#park.run(now, reportId)
    this.#counters.add('reports_parked', 1)
    return true
  }

  #splitIn (reportId: string, parts: readonly RenderedReport[], error: string, now: number, detail: FailureDetail): boolean {
    const row = this.#byId.get(reportId)
    if (row === undefined || row.parked_ms !== null) return false
    checkSplit(toEntry(row), parts)
    for (const p of parts) {
      if (this.#byId.get(p.reportId) !== undefined) throw new Error(`report id ${p.reportId} is already in the outbox`)
    }
    let positions = this.#positionsAt(row.position, parts.length)
    if (positions === undefined) {
      this.#renumber()
      positions = this.#positionsAt(this.#byId.get(reportId)?.position ?? 0, parts.length)
      if (positions === undefined) throw new Error('no room in the delivery order after renumbering')
    }
    this.#failed(reportId, error, now, detail)
    this.#delete.run(reportId)
    for (const [i, p] of parts.entries()) this.#insert.run(p.reportId, row.created_ms, p.body, p.uids, p.bytes, positions[i] as number)
    this.#counters.add('reports_created', parts.length)
    this.#counters.add('reports_split', 1)
    return true
  }

  /**
   * `n` increasing positions after the pending report before `position` and
   * ending at `position` itself: the place of the report they replace. None
   * when doubles cannot tell them apart any more (after many splits at one
   * place); the caller renumbers then.
   */
  #positionsAt (position: number, n: number): number[] | undefined {
    const before = this.#before.get(position) ?? position - n
    const step = (position - before) / n
    const out = Array.from({ length: n }, (_, i) => i === n - 1 ? position : before + step * (i + 1))
    return out.every((p, i) => p > (i === 0 ? before : out[i - 1] as number)) ? out : undefined
  }

  /** Positions 1…n for the pending reports, in their order: at most the largest seq, since each has a distinct seq ≥ 1. */
  #renumber (): void {
    for (const [i, id] of this.#pendingIds.all().entries()) this.#setOrd.run(i + 1, id)
  }

  #retryIn (target: string | { all: true }): string[] {
    const parked = this.#parkedIds.all().filter((r) => typeof target !== 'string' || r.report_id === target)
    const front = this.#front.get() ?? null
    for (const [i, r] of parked.entries()) {
      // Before the first pending report; with none pending, their own seqs keep them in order.
      this.#unpark.run(front === null ? r.seq : front - parked.length + i, r.report_id)
    }
    return parked.map((r) => r.report_id)
  }

  #dropIn (reportId: string, force: boolean): OutboxItem | 'not-parked' | 'unknown' {
    const row = this.#itemById.get(reportId)
    if (row === undefined) return 'unknown'
    if (row.parked_ms === null && !force) return 'not-parked'
    this.#delete.run(reportId)
    this.#counters.add('reports_dropped', 1)
    this.#counters.add('reports_dropped_bytes', row.bytes)
    return toItem(row)
  }
}

function toItem (row: ItemRow): OutboxItem {
  const { body_bytes: bodyBytes, ...rest } = row
  const entry: Omit<OutboxEntry, 'body'> & { body?: string } = toEntry({ ...rest, body: '' })
  delete entry.body
  return { ...entry, bodyBytes }
}
