import { randomFillSync } from 'node:crypto'
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ScenarioId } from './plan.ts'

/**
 * The media the `proxy` benchmark serves, generated once and cached in
 * bench/.content/ (git-ignored). Random bytes, so that nothing along the way
 * (a compressing proxy, a deduplicating file system) gets an easy ride.
 */

/** bench/.content/ */
export const CONTENT_DIR = fileURLToPath(new URL('../../.content/', import.meta.url))

const MIB = 2 ** 20
/** Bumped whenever the layout changes, so that an old cache is rebuilt rather than misread. */
const LAYOUT_VERSION = 1

interface Layout {
  id: ScenarioId
  dir: string
  count: number
  bytes: number
  name: (i: number) => string
}

const LAYOUTS: readonly Layout[] = [
  { id: 's1', dir: 's1', count: 64, bytes: MIB, name: (i) => `seg-${String(i).padStart(3, '0')}.ts` },
  // .m4s: a file type streammeter meters (docs/access.md#identity), like the CMAF fragments
  // of a low-latency stream, which are this small.
  { id: 's2', dir: 's2', count: 10_000, bytes: 4096, name: (i) => `frag-${String(i).padStart(5, '0')}.m4s` },
  { id: 's3', dir: 's3', count: 1, bytes: 64 * MIB, name: () => 'movie.mp4' }
]

/** Paths of one scenario's files, relative to the content root, without a leading slash. */
export interface ContentFiles {
  files: readonly string[]
  bytes: number
}

export interface Content {
  root: string
  byScenario: Readonly<Record<ScenarioId, ContentFiles>>
}

/**
 * The content, generated when bench/.content/ is missing, incomplete or of
 * another layout. Every file's size is checked on each run (10,065 stats,
 * a fraction of a second), so a half-written cache from an interrupted run
 * is rebuilt.
 */
export function ensureContent (log: (line: string) => void, root = CONTENT_DIR): Content {
  const content = describe(root)
  if (!isComplete(content)) {
    log(`generating benchmark content in ${root} (${LAYOUTS.map((l) => `${l.count} x ${l.bytes} B`).join(', ')})`)
    rmSync(root, { recursive: true, force: true })
    const buf = Buffer.allocUnsafe(Math.max(...LAYOUTS.map((l) => l.bytes)))
    for (const l of LAYOUTS) {
      mkdirSync(join(root, l.dir), { recursive: true })
      for (let i = 0; i < l.count; i++) {
        const body = buf.subarray(0, l.bytes)
        randomFillSync(body)
        writeFileSync(join(root, l.dir, l.name(i)), body)
      }
    }
    // Written last: its presence says every file above was written.
    writeFileSync(join(root, 'manifest.json'), JSON.stringify({ version: LAYOUT_VERSION, layouts: LAYOUTS.map(({ name: _, ...l }) => l) }) + '\n')
  }
  return content
}

function describe (root: string): Content {
  const byScenario = {} as Record<ScenarioId, ContentFiles>
  for (const l of LAYOUTS) {
    byScenario[l.id] = { files: Array.from({ length: l.count }, (_, i) => `${l.dir}/${l.name(i)}`), bytes: l.bytes }
  }
  return { root, byScenario }
}

function isComplete (content: Content): boolean {
  try {
    const manifest = JSON.parse(readFileSync(join(content.root, 'manifest.json'), 'utf8')) as { version?: unknown }
    if (manifest.version !== LAYOUT_VERSION) return false
    for (const { files, bytes } of Object.values(content.byScenario)) {
      for (const f of files) {
        if (statSync(join(content.root, f)).size !== bytes) return false
      }
    }
    return true
  } catch {
    return false
  }
}
