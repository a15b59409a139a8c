import { createHmac } from 'node:crypto'

/**
 * Signed media URLs as docs/access.md#signed-urls defines them, computed here from the
 * contract rather than with streammeter's own signer: if the two ever
 * disagree, every streammeter request of the benchmark fails with 403 and
 * the error column says so.
 */

/** `/<path>?uid=U&expires=E&token=T`, T = HMAC-SHA256(secret, `U:P:E`) in lowercase hex. */
export function signedPath (secret: string, uid: string, path: string, expires: number): string {
  const token = createHmac('sha256', secret).update(`${uid}:${path}:${expires}`, 'utf8').digest('hex')
  // Our file names and uids are plain ASCII (letters, digits, `-`, `.`, `/`): nothing to percent-encode.
  return `/${path}?uid=${uid}&expires=${expires}&token=${token}`
}

/** A small seeded PRNG (mulberry32): the same seed gives the same request pools on every run. */
export function seededRandom (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** A copy of `items` in random order (Fisher–Yates). */
export function shuffled<T> (items: readonly T[], random: () => number): T[] {
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    const tmp = out[i] as T
    out[i] = out[j] as T
    out[j] = tmp
  }
  return out
}

/** One request of a pool: which file, for which uid, at which signed path. */
export interface PoolEntry {
  file: string
  uid: string
  path: string
}

/**
 * `size` random (file, uid) pairs, uids `<prefix>0` … `<prefix><uids-1>`,
 * each signed to expire at `expires`.
 */
export function signedPool (opts: {
  secret: string
  files: readonly string[]
  uids: number
  uidPrefix: string
  size: number
  expires: number
  random: () => number
}): PoolEntry[] {
  const { secret, files, uids, uidPrefix, size, expires, random } = opts
  const pool: PoolEntry[] = []
  for (let i = 0; i < size; i++) {
    const file = files[Math.floor(random() * files.length)] as string
    const uid = `${uidPrefix}${Math.floor(random() * uids)}`
    pool.push({ file, uid, path: signedPath(secret, uid, file, expires) })
  }
  return pool
}
