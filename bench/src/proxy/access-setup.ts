import { Pool } from 'undici'
import type { PoolEntry } from './signed-paths.ts'
import { signedPath } from './signed-paths.ts'
import type { RunningTarget } from './targets.ts'
import { accessApiKey, needsGrants } from './targets.ts'
import type { WrkRequest } from './wrk.ts'

/**
 * What the session and grant targets (plan.ts, `access`) need before their
 * S2 load: every uid's session opened, or every uid granted the S2
 * directory from 127.0.0.1 with no User-Agent (wrk sends none, and neither
 * does undici's `request`), through the target's own API, as a platform
 * would. Not timed.
 */

const CONCURRENCY = 32

/**
 * Open a session per uid with one request each, and return each uid's
 * session id (its `X-Session-ID` answer header): a signed request, or for
 * a target that {@link needsGrants} a plain one that the uid's grant lets in.
 * @throws when a request is not answered 200 with a session
 */
export async function openSessions (t: RunningTarget, o: { secret: string, file: string, uids: readonly string[], expires: number }): Promise<Map<string, string>> {
  const ids = new Map<string, string>()
  const granted = needsGrants(t.spec)
  if (granted) await grantAll(t, o)
  await eachUid(t, o.uids, async (pool, uid) => {
    const res = await pool.request({ path: granted ? `/${o.file}?uid=${uid}` : signedPath(o.secret, uid, o.file, o.expires), method: 'GET' })
    await res.body.dump()
    const id = res.headers['x-session-id']
    if (res.statusCode !== 200 || typeof id !== 'string') throw new Error(`${t.spec.label}: opening ${uid}'s session answered ${res.statusCode}`)
    ids.set(uid, id)
  })
  return ids
}

/**
 * Grant every uid the directory of `file` from 127.0.0.1 with an empty User-Agent.
 * @throws when a grant is not answered 200
 */
export async function grantAll (t: RunningTarget, o: { secret: string, file: string, uids: readonly string[] }): Promise<void> {
  const headers = { authorization: `Bearer ${accessApiKey(o.secret)}`, 'content-type': 'application/json' }
  await eachUid(t, o.uids, async (pool, uid) => {
    const body = JSON.stringify({ uid, path: `/${o.file}`, clientIp: '127.0.0.1', UserAgent: '' })
    const res = await pool.request({ path: '/api/whitelist', method: 'POST', headers, body })
    const text = await res.body.text()
    if (res.statusCode !== 200) throw new Error(`${t.spec.label}: granting ${uid} answered ${res.statusCode}: ${text}`)
  })
}

/** The S2 load of an access target: the pool's (file, uid) pairs as plain paths, with the session or the uid. */
export function accessRequests (pool: readonly PoolEntry[], access: 'session' | 'grant', sessions: ReadonlyMap<string, string>): WrkRequest[] {
  return pool.map((e) => access === 'grant'
    ? `/${e.file}?uid=${e.uid}`
    : { path: `/${e.file}`, header: `X-Session-ID: ${sessions.get(e.uid) ?? 'none'}` })
}

async function eachUid (t: RunningTarget, uids: readonly string[], fn: (pool: Pool, uid: string) => Promise<void>): Promise<void> {
  const pool = new Pool(t.url, { connections: CONCURRENCY })
  try {
    let next = 0
    const worker = async (): Promise<void> => {
      for (let i = next++; i < uids.length; i = next++) await fn(pool, uids[i] as string)
    }
    await Promise.all(Array.from({ length: CONCURRENCY }, worker))
  } finally {
    await pool.close()
  }
}
