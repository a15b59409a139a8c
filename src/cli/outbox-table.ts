import type { OutboxItem } from '../meter/index.ts'

/** Longest last error shown in a table cell; `--json` has it whole. */
const ERROR_WIDTH = 60

/**
 * The outbox as a text table for `streammeter outbox list`: one line per
 * report, pending ones in delivery order, then parked ones. Times are UTC,
 * sizes whole bytes (`BYTES` is usage, `BODY` the JSON sent).
 */
export function outboxTable (items: readonly OutboxItem[]): string {
  const header = ['REPORT ID', 'SEQ', 'CREATED (UTC)', 'UIDS', 'BYTES', 'BODY', 'ATTEMPTS', 'STATE', 'LAST ERROR']
  const rows = items.map((e) => [
    e.reportId,
    String(e.seq),
    new Date(e.createdAt).toISOString().slice(0, 19).replace('T', ' '),
    String(e.uids),
    String(e.bytes),
    String(e.bodyBytes),
    e.rejections === undefined ? String(e.attempts) : `${e.attempts} (${e.rejections} refused)`,
    e.parkedAt === undefined ? 'pending' : 'parked',
    lastError(e)
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)))
  // Numbers right-aligned; the last column is not padded.
  const numeric = new Set([1, 3, 4, 5])
  const line = (cells: readonly string[]): string => cells.map((c, i) => {
    if (i === cells.length - 1) return c
    const width = widths[i] as number
    return numeric.has(i) ? c.padStart(width) : c.padEnd(width)
  }).join('  ').trimEnd() + '\n'
  return line(header) + rows.map(line).join('')
}

function lastError (e: OutboxItem): string {
  if (e.lastError === undefined) return '-'
  // The status first (the message may say it too): what an operator sorts by.
  const text = e.lastStatus === undefined ? e.lastError : `${e.lastStatus}: ${e.lastError}`
  return text.length > ERROR_WIDTH ? text.slice(0, ERROR_WIDTH - 1) + '…' : text
}
