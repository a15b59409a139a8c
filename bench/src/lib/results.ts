import { mkdirSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

/** bench/results/ (git-ignored). */
export const RESULTS_DIR = fileURLToPath(new URL('../../results/', import.meta.url))

/** Write `data` to `bench/results/<name>-<UTC timestamp>.json`; returns the path. */
export function writeResults (name: string, data: unknown, at = new Date()): string {
  mkdirSync(RESULTS_DIR, { recursive: true })
  const stamp = at.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-')
  const path = `${RESULTS_DIR}${name}-${stamp}.json`
  writeFileSync(path, JSON.stringify(data, null, 2) + '\n')
  return path
}
