/** Writing values into nginx's configuration language. */

/** nginx's time: whole seconds, or milliseconds when there is a fraction. */
export function seconds (s: number): string {
  return Number.isInteger(s) ? `${s}s` : `${Math.max(1, Math.round(s * 1000))}ms`
}

/**
 * An nginx string in single quotes. nginx has no escape for `$` (it would be
 * read as a variable), so a value holding one is refused, as are quotes,
 * backslashes and line breaks.
 */
export function quote (value: string): string {
  if (/[$'\\\n\r]/.test(value)) throw new TypeError(`cannot write ${JSON.stringify(value)} into the nginx configuration`)
  return `'${value}'`
}
