/** Small helpers to print numbers and tables. */

/** Median of a non-empty list (mean of the middle two for an even count). */
export function median (values: readonly number[]): number {
  if (values.length === 0) throw new RangeError('median of an empty list')
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] as number : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

/** `1234567` → `1,234,567`. */
export function int (n: number): string {
  return Math.round(n).toLocaleString('en-US')
}

/** `n` with `digits` decimals. */
export function fixed (n: number, digits = 2): string {
  return n.toFixed(digits)
}

/** Left-aligned first column, right-aligned others, two spaces between columns. */
export function table (header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const all = [header, ...rows]
  const widths = header.map((_, c) => Math.max(...all.map((r) => (r[c] ?? '').length)))
  const line = (r: readonly string[]): string => r
    .map((cell, c) => c === 0 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0))
    .join('  ')
    .trimEnd()
  return [line(header), ...rows.map(line)].join('\n')
}
