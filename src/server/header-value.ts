/**
 * The first value of a header as Node or undici hands it over: a string, an
 * array for a field sent more than once, or undefined.
 */
export function firstValue (value: string | readonly string[] | undefined): string | undefined {
  return typeof value === 'string' ? value : value?.[0]
}
