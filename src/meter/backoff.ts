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
