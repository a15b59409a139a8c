#!/usr/bin/env node
// Runs every test/**/*.test.ts through tsx with node:test. Node 20 does not
// expand globs in `--test`, so the files are listed here. Extra arguments
// (file paths or node:test flags) are passed through: with a path, only the
// named files run.
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
const named = args.filter((a) => !a.startsWith('-'))
const flags = args.filter((a) => a.startsWith('-'))
const files = named.length > 0 ? named : list(join(root, 'test'))

const child = spawn(process.execPath, [
  '--import', 'tsx',
  '--test',
  '--test-concurrency=2',
  ...flags,
  ...files
], { cwd: root, stdio: 'inherit' })
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)))
