import assert from 'node:assert/strict'
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { describe, it } from 'node:test'

/**
 * The shape docs/architecture.md describes, checked: no import cycles, arrows
 * between layers point down only, and no source file over 400 lines without
 * a one-line reason at its top.
 */
const root = resolve(import.meta.dirname, '..')
const src = join(root, 'src')

function sources (dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name)
    return statSync(p).isDirectory() ? sources(p) : name.endsWith('.ts') ? [p] : []
  })
}

const files = sources(src)
const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+'(\.[^']+)'|(?:^|\n)\s*import\s+'(\.[^']+)'|import\('(\.[^']+)'\)/g
/** Each source file (relative to src/) → the source files it imports, type-only imports included. */
const graph = new Map(files.map((file) => {
  const text = readFileSync(file, 'utf8')
  const targets = [...text.matchAll(IMPORT)].map((m) => relative(src, resolve(dirname(file), (m[1] ?? m[2] ?? m[3])!)))
  return [relative(src, file), targets]
}))

/** Which layer a file is in: its first folder under src/, or the file itself at the top. */
const layerOf = (file: string): string => file.includes('/') ? file.slice(0, file.indexOf('/')) : file

describe('the shape of src/', () => {
  it('has no import cycle', () => {
    const state = new Map<string, 'open' | 'done'>()
    const cycles: string[] = []
    const visit = (file: string, path: string[]): void => {
      if (state.get(file) === 'done') return
      if (state.get(file) === 'open') {
        cycles.push([...path.slice(path.indexOf(file)), file].join(' → '))
        return
      }
      state.set(file, 'open')
      for (const next of graph.get(file) ?? []) visit(next, [...path, file])
      state.set(file, 'done')
    }
    for (const file of graph.keys()) visit(file, [])
    assert.deepEqual(cycles, [])
  })

  it('points down only: meter needs nothing above it; store and config not the server or the CLI', () => {
    // What each layer may import, besides itself and the shared top-level files.
    const allowed: Record<string, string[]> = {
      meter: [],
      store: ['meter'],
      config: ['meter', 'store'],
      sink: ['meter'],
      server: ['meter', 'store', 'config'],
      cli: ['meter', 'store', 'config', 'server', 'sink']
    }
    const wrong: string[] = []
    for (const [file, targets] of graph) {
      const from = layerOf(file)
      const may = allowed[from]
      if (may === undefined) continue // a shared top-level file (errors.ts, ip-address.ts…)
      for (const target of targets) {
        const to = layerOf(target)
        if (to !== from && to in allowed && !may.includes(to)) wrong.push(`${file} → ${target}`)
      }
    }
    assert.deepEqual(wrong, [])
    // The shared top-level files import no layer at all.
    const shared = [...graph].filter(([file]) => !file.includes('/'))
    assert.deepEqual(shared.flatMap(([file, targets]) => targets.filter((t) => t.includes('/')).map((t) => `${file} → ${t}`)), [])
  })

  it('has no file over 400 lines without a one-line reason at its top', () => {
    const long = files
      .map((file) => ({ file: relative(root, file), text: readFileSync(file, 'utf8') }))
      .filter(({ text }) => text.split('\n').length > 400 && !/^\/\/ Over 400 lines: \S/.test(text))
      .map(({ file, text }) => `${file}: ${text.split('\n').length} lines`)
    assert.deepEqual(long, [])
  })
})
