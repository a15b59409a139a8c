import { StreammeterError } from '../../errors.ts'
import type { UsageStore } from '../../meter/index.ts'

/** What one probe of the store found. */
export interface StoreProbe {
  ok: boolean
  /** The error code when the probe failed (`SM_ERR_STORE` for anything unnamed), else null. */
  error: string | null
  /** How long the probe took, in ms (the timeout when it timed out). */
  latencyMs: number
}

/**
 * Time one cheap read (`outboxStats()`) of the store, failing it after
 * `timeoutMs`: `/health` and the dashboard's store panel. Never throws, and
 * never shows an error's message (it may carry a connection string).
 */
export async function probeStore (store: Pick<UsageStore, 'outboxStats'>, timeoutMs: number): Promise<StoreProbe> {
  const started = performance.now()
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      store.outboxStats(),
      new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error('timeout')), timeoutMs) })
    ])
    return { ok: true, error: null, latencyMs: elapsed(started) }
  } catch (err) {
    return { ok: false, error: err instanceof StreammeterError ? err.code : 'SM_ERR_STORE', latencyMs: elapsed(started) }
  } finally {
    clearTimeout(timer)
  }
}

function elapsed (started: number): number {
  return Math.round((performance.now() - started) * 100) / 100
}
