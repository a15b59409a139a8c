/** What a full confinement check proved about one request path (fs-origin.ts). */
export interface VerifiedPath {
  /**
   * The path to open on a hit: the request's own path under the root, or
   * its real path when its last component is a symlink (O_NOFOLLOW refuses
   * to open that one by name).
   */
  readonly open: string
  /**
   * Identity of the regular file that was found strictly inside the root.
   * `birth` (statx birth time; 0 where the filesystem keeps none) tells a
   * reused inode number from the file that was checked.
   */
  readonly dev: bigint
  readonly ino: bigint
  readonly birth: bigint
  /** When the full check ran, on the cache's clock (ms). */
  readonly verifiedAt: number
}

/** Settings of {@link PathCache}. */
export interface PathCacheOptions {
  /** Most entries kept; the oldest verification is dropped first. */
  maxEntries: number
  /** Age (ms) after which an entry is no longer trusted. */
  ttl: number
  /** A monotonic clock in ms (wall-clock jumps must not stretch the TTL). */
  now: () => number
}

/**
 * A bounded map from request path to the last full confinement check of it,
 * trusted for `ttl` ms after that check.
 *
 * Eviction is by age of the verification, not by last use: a hit does not
 * renew an entry (the TTL bounds how long ago the file was last proved to be
 * inside the root), so the entry that was verified longest ago is both the
 * first to expire and the one worth least. A `Map` keeps insertion order, and
 * every fill deletes before it sets, so the map's first key is always that
 * entry: eviction and the sweep of expired entries are O(1) each, with no
 * list to maintain and nothing to reorder on the hot path (an LRU would move
 * the entry on every hit).
 */
export class PathCache {
  readonly #entries = new Map<string, VerifiedPath>()
  readonly #maxEntries: number
  readonly #ttl: number
  readonly #now: () => number

  constructor (options: PathCacheOptions) {
    this.#maxEntries = options.maxEntries
    this.#ttl = options.ttl
    this.#now = options.now
  }

  /** The clock the entries' `verifiedAt` is read on. */
  now (): number {
    return this.#now()
  }

  /** The entry of `path` if it was verified less than `ttl` ago. */
  get (path: string): VerifiedPath | undefined {
    const entry = this.#entries.get(path)
    if (entry === undefined) return undefined
    const age = this.#now() - entry.verifiedAt
    // A negative age (an injected clock moved back) is not trusted either.
    if (age >= 0 && age < this.#ttl) return entry
    this.#entries.delete(path)
    return undefined
  }

  /** Record a full check of `path`, dropping the oldest entries beyond the bound. */
  set (path: string, entry: VerifiedPath): void {
    if (this.#maxEntries <= 0) return
    this.#entries.delete(path) // re-inserted last: the map stays ordered by verifiedAt
    this.#entries.set(path, entry)
    while (this.#entries.size > this.#maxEntries) this.#dropOldest()
    // Expired entries at the front would otherwise linger until pushed out:
    // drop a couple per fill, so a cache that stops growing also shrinks.
    for (let i = 0; i < 2; i++) {
      const first = this.#entries.values().next()
      if (first.done === true || this.#now() - first.value.verifiedAt < this.#ttl) break
      this.#dropOldest()
    }
  }

  /** Forget `path` (its file failed a check). */
  delete (path: string): void {
    this.#entries.delete(path)
  }

  /** Number of entries held (expired ones included until swept). */
  get size (): number {
    return this.#entries.size
  }

  #dropOldest (): void {
    const first = this.#entries.keys().next()
    if (first.done !== true) this.#entries.delete(first.value)
  }
}
