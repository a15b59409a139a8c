import { spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * Other Node.js majors for the `…-node22` targets: the same
 * streammeter bundle run by another runtime, side by side with Node 20.
 *
 * A runtime comes from the npm registry (the `node` package ships the
 * binary and its headers), installed once into `bench/.runtimes/node<major>/`
 * (git-ignored). streammeter's packages are the repository's, but for
 * better-sqlite3, a native addon built for one ABI: the runtime gets a
 * `node_modules` of links to the repository's packages, with a copy of
 * better-sqlite3 compiled against the runtime's headers by npm's node-gyp.
 */

const REPO = fileURLToPath(new URL('../../../', import.meta.url))
const RUNTIMES = fileURLToPath(new URL('../../.runtimes/', import.meta.url))

/** A Node.js major ready to run streammeter. */
export interface Runtime {
  major: number
  /** `process.version` of the binary, e.g. `v22.23.3`. */
  version: string
  /** The `node` binary. */
  node: string
  /** A `node_modules` for the bundle: the repository's packages, better-sqlite3 built for this runtime. */
  modules: string
}

/**
 * Install (once) Node `major` from the npm registry and build streammeter's
 * packages for it; `log` says what takes time. Throws with the failing
 * command's output when something cannot be done.
 */
export function ensureRuntime (major: number, log: (line: string) => void): Runtime {
  const dir = join(RUNTIMES, `node${major}`)
  let node = findBinary(dir)
  if (node === undefined) {
    log(`runtimes: installing node@${major} from the npm registry into ${dir}`)
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `runtime-node${major}`, private: true }) + '\n')
    run('npm', ['install', '--no-audit', '--no-fund', '--no-package-lock', `node@${major}`], dir, process.env)
    node = findBinary(dir)
    if (node === undefined) throw new Error(`runtimes: node@${major} installed, but no node binary found under ${dir}`)
  }
  const version = run(node, ['-p', 'process.version'], dir, process.env).trim()
  if (!version.startsWith(`v${major}.`)) throw new Error(`runtimes: ${node} is ${version}, not Node ${major}`)
  return { major, version, node, modules: ensureModules(dir, node, version, log) }
}

/** `dir/app/node_modules`: links to the repository's packages, and better-sqlite3 compiled for `node`. */
function ensureModules (dir: string, node: string, version: string, log: (line: string) => void): string {
  const repoModules = join(REPO, 'node_modules')
  const sqlite = JSON.parse(readFileSync(join(repoModules, 'better-sqlite3', 'package.json'), 'utf8')) as { version: string }
  const modules = join(dir, 'app', 'node_modules')
  const stamp = join(dir, 'app', 'built-for.txt')
  const want = `node ${version}, better-sqlite3 ${sqlite.version}\n`
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === want) return modules
  log(`runtimes: building better-sqlite3 ${sqlite.version} for node ${version} (a minute or two)`)
  rmSync(join(dir, 'app'), { recursive: true, force: true })
  mkdirSync(modules, { recursive: true })
  for (const name of readdirSync(repoModules)) {
    if (name === 'better-sqlite3' || name.startsWith('.')) continue
    symlinkSync(join(repoModules, name), join(modules, name), 'dir')
  }
  const copy = join(modules, 'better-sqlite3')
  cpSync(join(repoModules, 'better-sqlite3'), copy, { recursive: true, filter: (src) => !src.includes(`${join('better-sqlite3', 'build')}`) })
  const headers = headersOf(node)
  if (headers === undefined) throw new Error(`runtimes: no Node headers (include/node/node.h) beside ${node}`)
  const gyp = npmNodeGyp()
  // node-gyp run by the runtime itself, against the headers the package ships: nothing is
  // downloaded. npm's own `nodedir` setting (this machine's Node 20 headers), which reaches
  // node-gyp through the environment under `npm run`, would win over the flag.
  const env = { ...process.env, PATH: `${dirname(node)}:${process.env.PATH ?? ''}`, npm_config_nodedir: headers }
  run(node, [gyp, 'rebuild', '--release', `--nodedir=${headers}`], copy, env)
  // Loading it is the check: a build against the wrong headers fails here, with Node's message.
  run(node, ['-e', `new (require(${JSON.stringify(copy)}))(':memory:').close()`], dirname(copy), process.env)
  writeFileSync(stamp, want)
  return modules
}

/** The binary the registry's `node` package installed (its platform package holds it). */
function findBinary (dir: string): string | undefined {
  const platform = `node-${process.platform}-${process.arch}`
  for (const candidate of [
    join(dir, 'node_modules', 'node', 'node_modules', platform, 'bin', 'node'),
    join(dir, 'node_modules', platform, 'bin', 'node')
  ]) {
    if (existsSync(candidate)) return candidate
  }
  return undefined
}

/** The directory whose `include/node` holds the headers of the runtime `node` (node-gyp's `--nodedir`). */
function headersOf (node: string): string | undefined {
  const root = dirname(dirname(node))
  return existsSync(join(root, 'include', 'node', 'node.h')) ? root : undefined
}

/**
 * The node-gyp bundled with npm: beside the npm running this
 * (`npm_execpath`), else beside the one on PATH.
 */
function npmNodeGyp (): string {
  const candidates = [process.env.npm_execpath]
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir !== '' && existsSync(join(dir, 'npm'))) candidates.push(realpathSync(join(dir, 'npm')))
  }
  for (const cli of candidates) {
    if (cli === undefined) continue
    const gyp = join(dirname(dirname(cli)), 'node_modules', 'node-gyp', 'bin', 'node-gyp.js')
    if (existsSync(gyp)) return gyp
  }
  throw new Error('runtimes: npm\'s node-gyp not found (looked next to npm_execpath and the npm on PATH)')
}

function run (cmd: string, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv): string {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
  if (r.status !== 0 || r.error !== undefined) {
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(-15).join('\n')
    throw new Error(`runtimes: ${cmd} ${args.join(' ')} failed (${r.error?.message ?? `exit ${String(r.status)}`})${out === '' ? '' : `:\n${out}`}`)
  }
  return r.stdout
}
