import { NotFoundError, OriginTimeoutError, StreammeterError } from '../../errors.ts'
import type { Origin } from '../origin/origin.ts'
import { signedQuery } from '../access/url-signer.ts'

/** The uid the dashboard's demo player is metered under. */
export const MONITOR_DEMO_UID = 'demo'

/** The playlist the demo player asks for: the bundled demo media's master playlist. */
export const MONITOR_DEMO_PLAYLIST = 'master.m3u8'

/** How long a demo URL is valid, in seconds (it is fetched again for each play). */
const DEMO_TTL_SECONDS = 600

/** What `/monitor/api/demo` answers. */
export interface DemoLink {
  /** False when the origin has no demo playlist (or did not answer); `reason` says which. */
  available: boolean
  uid: string
  /** Path and query of the playlist, signed for the demo uid when `SIGNING_SECRET` is set. */
  url: string | null
  /** Unix seconds the signed URL stops working, or null (unsigned). */
  expires_at: number | null
  reason: string | null
}

/**
 * A URL for the dashboard's demo player: the demo playlist for the demo uid,
 * signed as docs/access.md says (`?uid=demo` without a secret), valid 10 minutes.
 * The origin is asked for the playlist first (a HEAD): an origin configured
 * with other media has none, and the page says so instead of a player error.
 */
export async function demoLink (origin: Origin, signingSecret: string | undefined, now: number): Promise<DemoLink> {
  const base = { uid: MONITOR_DEMO_UID, url: null, expires_at: null }
  try {
    let abort: ((reason: Error) => void) | undefined
    const timer = setTimeout(() => abort?.(new OriginTimeoutError()), 5000)
    try {
      const answer = await origin.fetch({ path: MONITOR_DEMO_PLAYLIST, method: 'HEAD', headers: {}, onAbortable: (a) => { abort = a } })
      answer.body?.destroy()
    } finally {
      clearTimeout(timer)
    }
  } catch (err) {
    const reason = err instanceof NotFoundError
      ? `the origin has no /${MONITOR_DEMO_PLAYLIST}: the demo stream is only there when no origin is configured (the bundled examples/media)`
      : `the origin did not answer for /${MONITOR_DEMO_PLAYLIST} (${err instanceof StreammeterError ? err.code : 'SM_ERR_INTERNAL'})`
    return { ...base, available: false, reason }
  }
  const { target, expires } = demoPlaylistTarget(signingSecret, now, DEMO_TTL_SECONDS)
  return { ...base, available: true, url: `/${target}`, expires_at: expires ?? null, reason: null }
}

/**
 * `master.m3u8?…` for the demo uid: signed to expire `ttlSeconds` after
 * `now` (ms) when a secret is set, `?uid=demo` without one.
 */
export function demoPlaylistTarget (signingSecret: string | undefined, now: number, ttlSeconds: number): { target: string, expires?: number } {
  if (signingSecret === undefined) return { target: `${MONITOR_DEMO_PLAYLIST}?uid=${MONITOR_DEMO_UID}` }
  const expires = Math.floor(now / 1000) + ttlSeconds
  const query = signedQuery({ secret: signingSecret, uid: MONITOR_DEMO_UID, path: MONITOR_DEMO_PLAYLIST, expires })
  return { target: `${MONITOR_DEMO_PLAYLIST}?${query}`, expires }
}
