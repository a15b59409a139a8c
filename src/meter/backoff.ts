/**
 * Retry delay after the `failures`-th consecutive failure of one report:
 * `base` doubling per failure up to `cap`, with ±20 % jitter so that many
 * instances recovering together do not hit the endpoint in step. Seconds in,
 * milliseconds out.
 */
export function retryDelayMs (failures: number, baseSeconds: number, capSeconds: number, random: () => number = Math.random): number {
  const exponent = Math.min(Math.max(failures, 1) - 1, 40)
  const nominal = Math.min(capSeconds, baseSeconds * 2 ** exponent)
  const jittered = nominal * (0.8 + 0.4 * random())
  return Math.round(Math.min(capSeconds, jittered) * 1000)
}

/**
 * The delay a `Retry-After` header asks for (RFC 9110 §10.2.3), in ms from
 * `now`: delay-seconds, or an HTTP-date (a date already past is 0).
 * Undefined when absent or neither form.
 */
export function retryAfterMs (value: string | readonly string[] | undefined, now: number): number | undefined {
  const text = (typeof value === 'string' ? value : value?.[0])?.trim()
  if (text === undefined || text === '') return undefined
  if (/^\d+$/.test(text)) return Number(text) * 1000
  // An HTTP-date starts with a day name (IMF-fixdate, RFC 850 or asctime);
  // this keeps Date.parse from reading "-1" or "5.5" as years.
  if (!/^[A-Za-z]{3,9},? /.test(text)) return undefined
  const at = Date.parse(text)
  return Number.isNaN(at) ? undefined : Math.max(0, at - now)
}

/**
 * The wait before the next attempt after a failure: the backoff of
 * {@link retryDelayMs}, or longer when the endpoint asked for it with
 * `Retry-After`, but never past the cap.
 */
export function nextAttemptDelayMs (failures: number, baseSeconds: number, capSeconds: number, retryAfter: number | undefined, random?: () => number): number {
  const backoff = retryDelayMs(failures, baseSeconds, capSeconds, random)
  return retryAfter === undefined ? backoff : Math.max(backoff, Math.min(retryAfter, Math.round(capSeconds * 1000)))
}
