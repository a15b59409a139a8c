import type { TrafficEvent } from '../../src/meter/index.ts'

/**
 * Deterministic input for the `record()` benchmark: the same bytes, uids,
 * IPs and session ids on every run, so that runs compare.
 *
 * Every string is a flat sequential string, like the ones the HTTP parser
 * hands the server. Concatenating 13 characters or more (`+`, template
 * literals) would give V8 cons strings instead: bigger, and slower to hash and
 * compare. Hence `join` and `Buffer#toString` below.
 */

/** Cycled through event by event: playlists and both segment kinds. */
export const FILE_TYPE_ROTATION = ['ts', 'm3u8', 'm4s'] as const

/** Largest response in the input: 2 MiB. */
export const MAX_EVENT_BYTES = 2 * 1024 * 1024

/** Time of the first event when times are explicit; each next event is 1 ms later. */
export const FIRST_EVENT_TIME = Date.UTC(2026, 0, 1)

/** The input of one scenario, made before the heap is measured. */
export interface SharedInput {
  events: TrafficEvent[]
  totalBytes: number
}

/** Bytes of event `k`, uniform in 1..{@link MAX_EVENT_BYTES}. */
export function makeByteSizes (events: number, seed = 0x5eed): Float64Array {
  const sizes = new Float64Array(events)
  let x = seed
  for (let k = 0; k < events; k++) {
    // xorshift32: fast and reproducible; quality is irrelevant here.
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    sizes[k] = 1 + ((x >>> 0) % MAX_EVENT_BYTES)
  }
  return sizes
}

/** `user-<n>` */
export function uidString (n: number): string {
  // Below 13 characters (n < 10^7) V8 builds a flat string from `+` anyway.
  return n < 1e7 ? 'user-' + n : ['user', n].join('-')
}

/** A distinct IPv4 address per uid: `10.a.b.c`. */
export function ipString (n: number): string {
  return ['10', (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.')
}

const sessionBytes = Buffer.alloc(16)

/** A distinct 32-hex-digit session id per uid (the shape of a UUID without dashes). */
export function sessionString (n: number): string {
  for (let i = 0; i < 4; i++) sessionBytes.writeUInt32BE(fmix32(n * 4 + i + 1), i * 4)
  return sessionBytes.toString('hex')
}

/**
 * Every event up front: uid `k % uids`, one IP and one session string per
 * uid (the same string objects for all of that uid's events), file types in
 * rotation, `time` explicit or omitted.
 */
export function makeSharedInput (events: number, uids: number, withTime: boolean, sizes: Float64Array): SharedInput {
  const uidStrings: string[] = []
  const ips: string[] = []
  const sessions: string[] = []
  const distinct = Math.min(uids, events)
  for (let n = 0; n < distinct; n++) {
    uidStrings.push(uidString(n))
    ips.push(ipString(n))
    sessions.push(sessionString(n))
  }
  const out: TrafficEvent[] = []
  let totalBytes = 0
  for (let k = 0; k < events; k++) {
    const n = k % uids
    const uid = uidStrings[n] as string
    const bytes = sizes[k] as number
    const fileType = FILE_TYPE_ROTATION[k % FILE_TYPE_ROTATION.length] as string
    const ip = ips[n] as string
    const sessionId = sessions[n] as string
    // Two literals rather than an optional key, so every event has one shape
    // (as it does at the server's single call site).
    out.push(withTime
      ? { uid, bytes, fileType, ip, sessionId, time: FIRST_EVENT_TIME + k }
      : { uid, bytes, fileType, ip, sessionId })
    totalBytes += bytes
  }
  return { events: out, totalBytes }
}

/** Sum of `sizes` (exact: far below 2^53). */
export function sumOf (sizes: Float64Array): number {
  let total = 0
  for (const b of sizes) total += b
  return total
}

// MurmurHash3's 32-bit finaliser: spreads consecutive n over all 32 bits.
function fmix32 (h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}
