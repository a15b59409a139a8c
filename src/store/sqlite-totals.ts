import type Database from 'better-sqlite3'
import type { UsageRecord } from '../meter/index.ts'

/** Changes to the live-record totals of `meta` (`q_uids`, `q_bytes`, `p_uids`, `p_bytes`) within one transaction. */
export class Totals {
  qUids = 0
  qBytes = 0
  pUids = 0
  pBytes = 0

  /** Count `r` in. */
  add (r: UsageRecord): void {
    this.#count(r, 1)
  }

  /** Count `r` out. */
  remove (r: UsageRecord): void {
    this.#count(r, -1)
  }

  #count (r: UsageRecord, sign: 1 | -1): void {
    if (r.qualified) {
      this.qUids += sign
      this.qBytes += sign * r.bytes
    } else {
      this.pUids += sign
      this.pBytes += sign * r.bytes
    }
  }
}

/**
 * The live-record totals `summary()` reads, kept in `meta` by every write
 * since they were added. A file written before then gets them counted once,
 * here, at open.
 */
export function ensureTotals (db: Database.Database): void {
  db.transaction(() => {
    const has = db.prepare<[], unknown>("SELECT 1 FROM meta WHERE key = 'q_uids'").pluck().get()
    if (has !== undefined) return
    const rows = db.prepare<[], { qualified: number, n: number, bytes: number }>(
      'SELECT qualified, count(*) AS n, coalesce(sum(bytes), 0) AS bytes FROM usage GROUP BY qualified').all()
    const q = rows.find((r) => r.qualified === 1)
    const p = rows.find((r) => r.qualified !== 1)
    const put = db.prepare<[string, number]>('INSERT INTO meta (key, value) VALUES (?, ?)')
    put.run('q_uids', q?.n ?? 0)
    put.run('q_bytes', q?.bytes ?? 0)
    put.run('p_uids', p?.n ?? 0)
    put.run('p_bytes', p?.bytes ?? 0)
  }).immediate()
}
