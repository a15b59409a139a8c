/** Heap measurement for benchmarks run with `node --expose-gc`. */

/** `global.gc`, or a clear error when node was started without `--expose-gc`. */
export function requireGc (): () => void {
  const gc = globalThis.gc
  if (typeof gc !== 'function') throw new Error('run node with --expose-gc: memory is measured after a full GC')
  return () => { gc() }
}

/**
 * Bytes the program holds after a full collection: the JS heap plus the
 * ArrayBuffer backing stores, which live outside it (the delta map's
 * typed-array columns).
 *
 * Two collections, because V8 frees dead backing stores on a background
 * sweeper after a GC and only waits for it at the start of the next one; with
 * a single `gc()`, `arrayBuffers` may still count the previous round's
 * columns (tens of MB at 1M uids).
 */
export function settledHeapBytes (gc: () => void): number {
  gc()
  gc()
  const m = process.memoryUsage()
  return m.heapUsed + m.arrayBuffers
}
