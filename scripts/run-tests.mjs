#!/usr/bin/env node
// Runs every test/**/*.test.ts through tsx with node:test. Node 20 does not
// expand globs in `--test`, so the files are listed here. Extra arguments
// (file paths, folders or node:test flags) are passed through: with a path,
// only the named files (or the files under the named folders) run.
// `--quick` leaves out test/e2e/, the suites that start processes, kill
// them, or drive redis-server, ffmpeg or Chromium.
import { spawn } from 'node:child_process'
import { readdirSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'

const root = new URL('..', import.meta.url).pathname

function list (dir) {
  const out = []
  for (const name of readdirSync(dir)) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) out.push(...list(p))
    else if (name.endsWith('.test.ts')) out.push(relative(root, p))
  }
  return out.sort()
}

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const named = args.filter((a) => !a.startsWith('-'))
const flags = args.filter((a) => a.startsWith('-') && a !== '--quick')
const e2e = join('test', 'e2e') + '/'
const files = (named.length > 0 ? named : ['test'])
  .flatMap((p) => statSync(join(root, p)).isDirectory() ? list(join(root, p)) : [p])
  .filter((f) => !quick || !f.startsWith(e2e))

const child = spawn(process.execPath, [
  '--import', 'tsx',
  '--test',
  '--test-concurrency=2',
  ...flags,
  ...files
], { cwd: root, stdio: 'inherit' })
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)))
