/** Heap measurement for benchmarks run with `node --expose-gc`. */

/** `global.gc`, or a clear error when node was started without `--expose-gc`. */
export function requireGc (): () => void {
  const gc = globalThis.gc
  if (typeof gc !== 'function') throw new Error('run node with --expose-gc: memory is measured after a full GC')
  return () => { gc() }
}

/**
 * Bytes the program holds: the JS heap plus ArrayBuffer backing stores, which
 * live outside it (typed-array columns of the delta map).
 */
export function heapBytes (): number {
  const m = process.memoryUsage()
  return m.heapUsed + m.arrayBuffers
}
