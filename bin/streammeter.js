#!/usr/bin/env node
// The `streammeter` command: runs the compiled CLI (dist/), so that
// production never needs TypeScript tooling. From a checkout, build first.
import { existsSync } from 'node:fs'

const entry = new URL('../dist/cli/main.js', import.meta.url)

if (existsSync(entry)) {
  const { runCli } = await import(entry.href)
  await runCli()
} else {
  process.stderr.write('streammeter: dist/cli/main.js is missing; run `npm run build` first (or `npm start`)\n')
  process.exitCode = 1
}
