import { FILE_TYPES } from './file-type.ts'
import type { UsageDelta } from './types.ts'

const MIXED = 255
const INITIAL_CAPACITY = 1024

/**
 * What this process has recorded since its last flush, one slot per uid, kept
 * compact because it sits on the hot path and may hold a million uids:
 * numbers live in typed-array columns. A uid with one file type keeps it in
 * a byte column; one that mixes types (every HLS viewer fetches m3u8 and ts)
 * uses one shared column per file type, made on first use, so the mixed path
 * is an indexed add too, not a per-uid object. The first IP and session are
 * kept inline; only a second one gets a side entry.
 *
 * `add` is O(1) amortised and allocates nothing once the columns have grown
 * (except side entries as above).
 */
export class DeltaMap {
  readonly #maxIps: number
  readonly #maxSessions: number
  #slot = new Map<string, number>()
  #uids: string[] = []
  #ip: Array<string | undefined> = []
  #sid: Array<string | undefined> = []
  #bytes = new Float64Array(INITIAL_CAPACITY)
  #first = new Float64Array(INITIAL_CAPACITY)
  #last = new Float64Array(INITIAL_CAPACITY)
  #requests = new Uint32Array(INITIAL_CAPACITY)
  #type = new Uint8Array(INITIAL_CAPACITY)
  /** Bytes per file type of MIXED uids: one column per type, made when a uid first mixes into it. */
  #typeBytes: Array<Float64Array | undefined> = new Array(FILE_TYPES.length).fill(undefined)
  #moreIps = new Map<number, string[]>()
  #moreSids = new Map<number, string[]>()
  #size = 0

  constructor (maxIps: number, maxSessions: number) {
    this.#maxIps = maxIps
    this.#maxSessions = maxSessions
  }

  /** Distinct uids held. */
  get size (): number {
    return this.#size
  }

  /** Whether `uid` has a slot (events since the last drain). */
  has (uid: string): boolean {
    return this.#slot.has(uid)
  }

  /** Add one event of `requests` (0 or 1) requests. `typeIndex` is an index into {@link FILE_TYPES}. */
  add (uid: string, bytes: number, typeIndex: number, ip: string | undefined, sid: string | undefined, time: number, requests = 1): void {
    let i = this.#slot.get(uid)
    if (i === undefined) {
      i = this.#size++
      if (i === this.#bytes.length) this.#grow()
      this.#slot.set(uid, i)
      this.#uids[i] = uid
      this.#ip[i] = ip
      this.#sid[i] = sid
      this.#bytes[i] = bytes
      this.#first[i] = time
      this.#last[i] = time
      this.#requests[i] = requests
      this.#type[i] = typeIndex
      return
    }
    const prevBytes = this.#bytes[i] as number
    this.#bytes[i] = prevBytes + bytes
    this.#requests[i]! += requests
    if (time < (this.#first[i] as number)) this.#first[i] = time
    if (time > (this.#last[i] as number)) this.#last[i] = time
    const t = this.#type[i] as number
    if (t !== typeIndex) {
      if (t !== MIXED) {
        this.#column(t)[i] = prevBytes
        this.#type[i] = MIXED
      }
      this.#column(typeIndex)[i]! += bytes
    }
    if (ip !== undefined && ip !== this.#ip[i]) this.#addTo(this.#ip, this.#moreIps, i, ip, this.#maxIps)
    if (sid !== undefined && sid !== this.#sid[i]) this.#addTo(this.#sid, this.#moreSids, i, sid, this.#maxSessions)
  }

  /** Take everything out as deltas and start empty. Synchronous: no event can slip between. */
  drain (): UsageDelta[] {
    const out: UsageDelta[] = new Array(this.#size)
    for (let i = 0; i < this.#size; i++) {
      const fileTypes: Record<string, number> = {}
      const t = this.#type[i] as number
      if (t === MIXED) {
        for (let k = 0; k < FILE_TYPES.length; k++) {
          const b = this.#typeBytes[k]?.[i] ?? 0
          if (b > 0) fileTypes[FILE_TYPES[k] as string] = b
        }
      } else {
        fileTypes[FILE_TYPES[t] as string] = this.#bytes[i] as number
      }
      out[i] = {
        uid: this.#uids[i] as string,
        bytes: this.#bytes[i] as number,
        requests: this.#requests[i] as number,
        fileTypes,
        ips: this.#list(this.#ip, this.#moreIps, i),
        sessions: this.#list(this.#sid, this.#moreSids, i),
        firstSeen: this.#first[i] as number,
        lastSeen: this.#last[i] as number
      }
    }
    this.#reset()
    return out
  }

  #list (first: Array<string | undefined>, more: Map<number, string[]>, i: number): string[] {
    const head = first[i]
    if (head === undefined) return []
    const rest = more.get(i)
    return rest === undefined ? [head] : [head, ...rest]
  }

  #addTo (first: Array<string | undefined>, more: Map<number, string[]>, i: number, value: string, cap: number): void {
    if (first[i] === undefined) {
      first[i] = value
      return
    }
    if (first[i] === value) return
    const rest = more.get(i)
    if (rest === undefined) {
      if (cap > 1) more.set(i, [value])
      return
    }
    if (rest.length + 1 < cap && !rest.includes(value)) rest.push(value)
  }

  /** The per-type column of `typeIndex`, made (zeroed, at the current capacity) on first use. */
  #column (typeIndex: number): Float64Array {
    let col = this.#typeBytes[typeIndex]
    if (col === undefined) {
      col = new Float64Array(this.#bytes.length)
      this.#typeBytes[typeIndex] = col
    }
    return col
  }

  #grow (): void {
    const n = this.#bytes.length * 2
    for (let k = 0; k < this.#typeBytes.length; k++) {
      const col = this.#typeBytes[k]
      if (col !== undefined) this.#typeBytes[k] = growF64(col, n)
    }
    this.#bytes = growF64(this.#bytes, n)
    this.#first = growF64(this.#first, n)
    this.#last = growF64(this.#last, n)
    const requests = new Uint32Array(n)
    requests.set(this.#requests)
    this.#requests = requests
    const type = new Uint8Array(n)
    type.set(this.#type)
    this.#type = type
  }

  #reset (): void {
    this.#slot = new Map()
    this.#uids = []
    this.#ip = []
    this.#sid = []
    // Columns are zeroed only where used; dropped with the others after a burst.
    for (const col of this.#typeBytes) col?.fill(0, 0, this.#size)
    this.#moreIps.clear()
    this.#moreSids.clear()
    // Give back memory after a burst of uids; keep the columns of a normal load.
    if (this.#bytes.length > INITIAL_CAPACITY * 4 && this.#size < this.#bytes.length / 4) {
      this.#bytes = new Float64Array(INITIAL_CAPACITY)
      this.#first = new Float64Array(INITIAL_CAPACITY)
      this.#last = new Float64Array(INITIAL_CAPACITY)
      this.#requests = new Uint32Array(INITIAL_CAPACITY)
      this.#type = new Uint8Array(INITIAL_CAPACITY)
      this.#typeBytes.fill(undefined)
    }
    this.#size = 0
  }
}

function growF64 (a: Float64Array, n: number): Float64Array<ArrayBuffer> {
  const b = new Float64Array(n)
  b.set(a)
  return b
}
