import { spawnSync } from 'node:child_process'
import { mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { build } from 'esbuild'
import type { Plugin } from 'esbuild'

/**
 * The Node targets run as plain `node <bundle>.mjs`, as production runs
 * compiled JavaScript (`node dist/…`), not through tsx: the loader costs a
 * Node process about 40 MiB of RSS, which would swamp the memory figures
 * (streammeter's peak RSS under S2 has a target of 100 MiB). esbuild (which
 * tsx itself uses) bundles the sources in a few milliseconds; packages stay
 * external and are loaded from node_modules, exactly as from dist/.
 */

const REPO = fileURLToPath(new URL('../../../', import.meta.url))
const BENCH = fileURLToPath(new URL('../../', import.meta.url))

/** streammeter's entry point in this working tree. */
export const STREAMMETER_ENTRY = join(REPO, 'src/cli/main.ts')

/** Entry points by bundle name. */
const ENTRIES = {
  streammeter: STREAMMETER_ENTRY,
  'fastify-proxy': fileURLToPath(new URL('./peers/fastify-proxy.ts', import.meta.url)),
  'http-proxy': fileURLToPath(new URL('./peers/http-proxy.ts', import.meta.url)),
  'undici-proxy': fileURLToPath(new URL('./peers/undici-proxy.ts', import.meta.url))
} as const

export type BundleName = keyof typeof ENTRIES

/**
 * Bundle every Node target into `dir` and return the path of each bundle.
 * streammeter's bundle sits where `dist/cli/main.js` would, under a
 * `node_modules` link to the repository's packages (see
 * {@link bundleStreammeter}); the peers' next to a link to this package's
 * node_modules (which finds the repository's fastify one level up, as from
 * bench/src/).
 */
export async function bundleNodeTargets (dir: string): Promise<Record<BundleName, string>> {
  const peers = join(dir, 'peers')
  mkdirSync(peers, { recursive: true })
  symlinkSync(join(BENCH, 'node_modules'), join(peers, 'node_modules'), 'dir')
  const out = {} as Record<BundleName, string>
  out.streammeter = await bundleStreammeter(ENTRIES.streammeter, dir)
  for (const name of ['fastify-proxy', 'http-proxy', 'undici-proxy'] as const) {
    const file = join(peers, `${name}.mjs`)
    await bundle(ENTRIES[name], file, [])
    out[name] = file
  }
  return out
}

/**
 * Bundle streammeter from `entry` (a tree's `src/cli/main.ts`) into
 * `dir/dist/cli/streammeter.mjs`, under a `dir/node_modules` link to
 * `modules` (the repository's packages, or another runtime's, see
 * runtimes.ts), and return the bundle's path. Every module keeps
 * the URL of its source file as `import.meta.url` ({@link ownImportMetaUrl}),
 * so the files streammeter reads at start (web/, package.json) come from the
 * tree the bundle was built from.
 */
export async function bundleStreammeter (entry: string, dir: string, modules = join(REPO, 'node_modules')): Promise<string> {
  const own = join(dir, 'dist', 'cli')
  mkdirSync(own, { recursive: true })
  symlinkSync(modules, join(dir, 'node_modules'), 'dir')
  const file = join(own, 'streammeter.mjs')
  // Worker threads' modules (`src/*/*-thread.ts`, the SQLite flush thread) are entries of
  // their own next to the bundle, where the module that starts them finds them.
  const threads = workerEntries(join(dirname(entry), '..'))
  await bundle({ streammeter: entry, ...threads }, file, [ownImportMetaUrl(entry, own)])
  return file
}

/**
 * The one set of esbuild options for every bundle. Code splitting keeps
 * each dynamic `import()` a chunk of its own, loaded when it runs, as from
 * dist/: without it esbuild hoists the imports of a lazily imported module
 * (the Redis store's `ioredis`, say) to the top of the bundle, and every
 * process would load them at start.
 */
async function bundle (entry: string | Record<string, string>, outfile: string, plugins: Plugin[]): Promise<void> {
  const name = basename(outfile, '.mjs')
  await build({
    entryPoints: typeof entry === 'string' ? { [name]: entry } : entry,
    outdir: dirname(outfile),
    outExtension: { '.js': '.mjs' },
    splitting: true,
    chunkNames: `${name}-chunks/[name]-[hash]`,
    bundle: true,
    packages: 'external',
    platform: 'node',
    format: 'esm',
    target: 'node20',
    logLevel: 'warning',
    plugins
  })
}

/**
 * In a bundle every module shares the bundle's `import.meta.url`, while
 * streammeter's modules find files relative to their own place in src/ (as
 * in dist/, which mirrors it): the dashboard's web/ from
 * src/server/monitor/, package.json from src/version.ts. No single place
 * for the bundle suits both, and a refactor that moves a module moves what
 * its relative paths point at. So each module gets the URL of its own
 * source file, as under tsx or in dist/. The entry keeps the bundle's URL:
 * it compares that with `process.argv[1]` to know that node runs it.
 */
function ownImportMetaUrl (entry: string, outdir: string): Plugin {
  return {
    name: 'own-import-meta-url',
    setup (b) {
      b.onLoad({ filter: /\.ts$/ }, (args) => {
        if (args.path === entry) return undefined
        const source = readFileSync(args.path, 'utf8')
        if (!source.includes('import.meta.')) return undefined
        // A module that starts a worker thread finds the thread's module next to its own
        // URL: it gets a URL in the bundle's directory, where the thread's entry is.
        const file = source.includes('new Worker(')
          ? pathToFileURL(join(outdir, `${basename(args.path, '.ts')}.mjs`))
          : pathToFileURL(args.path)
        const contents = source
          .replace(/\bimport\.meta\.url\b/g, JSON.stringify(file.href))
          .replace(/\bimport\.meta\.filename\b/g, JSON.stringify(args.path))
          .replace(/\bimport\.meta\.dirname\b/g, JSON.stringify(fileURLToPath(new URL('.', file)).replace(/\/$/, '')))
        return { contents, loader: 'ts' }
      })
    }
  }
}

/** The worker threads' modules (`<dir>/<name>-thread.ts` one level under `src`), by entry name. */
function workerEntries (src: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const dir of readdirSync(src, { withFileTypes: true })) {
    if (!dir.isDirectory()) continue
    for (const f of readdirSync(join(src, dir.name))) {
      if (f.endsWith('-thread.ts')) out[basename(f, '.ts')] = join(src, dir.name, f)
    }
  }
  return out
}

/** streammeter as built from a git ref of this repository, for an A/B run. */
export interface BaseBuild {
  /** The ref as given (`--base`). */
  ref: string
  /** The commit it names. */
  commit: string
  /** The bundle (see {@link bundleStreammeter}). */
  bundle: string
}

/** The build of the working tree an A/B run compares with its base. */
export interface CurrentBuild {
  /** HEAD's commit. */
  commit: string
  /** Whether src/, package.json or web/ differ from HEAD (the bundle is built from the working tree as it is). */
  uncommittedChanges: boolean
}

/**
 * The commit `ref` names in this repository, if it has streammeter's entry
 * point; otherwise a string that says what is wrong.
 */
export function resolveBase (ref: string): { ref: string, commit: string } | string {
  const commit = git(['rev-parse', '--verify', '--quiet', '--end-of-options', `${ref}^{commit}`], '')
  if (commit === '') return `--base ${ref}: not a commit of ${REPO}`
  if (git(['ls-tree', '--name-only', commit, '--', 'src/cli/main.ts'], '') === '') return `--base ${ref}: ${commit} has no src/cli/main.ts`
  return { ref, commit }
}

/**
 * streammeter as it was at `base.commit` ({@link resolveBase}): its `src/`, `nginx/`,
 * `package.json` and `web/` are taken with `git archive` into `dir/tree`
 * (the repository and its working tree are only read), next to a
 * `node_modules` link to the repository's packages, and bundled from that
 * tree's `src/cli/main.ts` exactly as the working tree's own
 * ({@link bundleStreammeter}).
 */
export async function bundleBase (base: { ref: string, commit: string }, dir: string): Promise<BaseBuild> {
  const { ref, commit } = base
  const tree = join(dir, 'tree')
  mkdirSync(tree, { recursive: true })
  const paths = ['src', 'package.json', 'web', 'nginx'].filter((p) => git(['ls-tree', '--name-only', commit, '--', p], '') !== '')
  const archive = join(dir, 'tree.tar')
  git(['archive', '--format=tar', `--output=${archive}`, commit, '--', ...paths], `git archive of ${commit} failed`)
  const tar = spawnSync('tar', ['-x', '-f', archive, '-C', tree], { encoding: 'utf8' })
  if (tar.status !== 0) throw new Error(`tar -x of ${archive} failed: ${tar.stderr}`)
  rmSync(archive)
  symlinkSync(join(REPO, 'node_modules'), join(tree, 'node_modules'), 'dir')
  const bundle = await bundleStreammeter(join(tree, 'src', 'cli', 'main.ts'), join(dir, 'bundle'))
  return { ref, commit, bundle }
}

/** HEAD of the repository, and whether the working tree's streammeter differs from it. */
export function describeCurrent (): CurrentBuild {
  return {
    commit: git(['rev-parse', '--verify', 'HEAD'], `no HEAD in ${REPO}`),
    uncommittedChanges: git(['status', '--porcelain', '--', 'src', 'package.json', 'web', 'nginx'], '') !== ''
  }
}

/** `git -C <repo> args`'s trimmed stdout; throws `failure` when it fails (returns '' when `failure` is ''). */
function git (args: readonly string[], failure: string): string {
  const r = spawnSync('git', ['-C', REPO, ...args], { encoding: 'utf8' })
  if (r.status !== 0 || r.error !== undefined) {
    if (failure === '') return ''
    throw new Error(`${failure}${r.stderr === '' ? '' : `: ${r.stderr.trim()}`}`)
  }
  return r.stdout.trim()
}
