import { createRequire } from 'node:module'

/**
 * Why the SQLite store cannot run on this Node.js, or undefined when it can.
 *
 * better-sqlite3 12 (the line that builds on Node 20) aborts the whole
 * process on Node 24: when V8 collects a prepared statement, its destructor
 * trips an assertion in Node (`RemoveEnvironmentCleanupHook`, `(env) !=
 * nullptr`), within seconds of opening a database and again at exit. The
 * fix is better-sqlite3 13, which needs Node 22 or later
 * (docs/performance.md#nodejs-22-and-24). A clear refusal at start beats a
 * SIGABRT under load.
 */
export function sqliteRuntimeProblem (node: string = process.versions.node, addon: string = addonVersion()): string | undefined {
  const nodeMajor = Number(node.split('.')[0])
  const addonMajor = Number(addon.split('.')[0])
  if (nodeMajor >= 24 && addonMajor < 13) {
    return `better-sqlite3 ${addon} aborts the process on Node.js ${node}; ` +
      'run the SQLite store on Node.js 20 or 22, or use another store (docs/configuration.md#store_url)'
  }
  return undefined
}

function addonVersion (): string {
  const require = createRequire(import.meta.url)
  return (require('better-sqlite3/package.json') as { version: string }).version
}
