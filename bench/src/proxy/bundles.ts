import { mkdirSync, readFileSync, symlinkSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { build } from 'esbuild'
import type { Plugin } from 'esbuild'

/**
 * The Node targets run as plain `node <bundle>.mjs`, as production runs
 * compiled JavaScript (`node dist/…`), not through tsx: the loader costs a
 * Node process about 40 MiB of RSS, which would swamp the memory figures
 * (streammeter's peak RSS under S2 has a target of 80 MiB). esbuild (which
 * tsx itself uses) bundles the sources in a few milliseconds; packages stay
 * external and are loaded from node_modules, exactly as from dist/.
 */

const REPO = fileURLToPath(new URL('../../../', import.meta.url))
const BENCH = fileURLToPath(new URL('../../', import.meta.url))

/** Entry points by bundle name. */
const ENTRIES = {
  streammeter: join(REPO, 'src/cli/main.ts'),
  'fastify-proxy': fileURLToPath(new URL('./peers/fastify-proxy.ts', import.meta.url)),
  'http-proxy': fileURLToPath(new URL('./peers/http-proxy.ts', import.meta.url))
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
  for (const name of ['fastify-proxy', 'http-proxy'] as const) {
    const file = join(peers, `${name}.mjs`)
    await bundle(ENTRIES[name], file, [])
    out[name] = file
  }
  return out
}

/**
 * Bundle streammeter from `entry` (a tree's `src/cli/main.ts`) into
 * `dir/dist/cli/streammeter.mjs`, under a `dir/node_modules` link to the
 * repository's packages, and return the bundle's path. Every module keeps
 * the URL of its source file as `import.meta.url` ({@link ownImportMetaUrl}),
 * so the files streammeter reads at start (web/, package.json) come from the
 * tree the bundle was built from.
 */
export async function bundleStreammeter (entry: string, dir: string): Promise<string> {
  const own = join(dir, 'dist', 'cli')
  mkdirSync(own, { recursive: true })
  symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'), 'dir')
  const file = join(own, 'streammeter.mjs')
  await bundle(entry, file, [ownImportMetaUrl(entry)])
  return file
}

/** The one set of esbuild options for every bundle. */
async function bundle (entry: string, outfile: string, plugins: Plugin[]): Promise<void> {
  await build({
    entryPoints: [entry],
    outfile,
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
function ownImportMetaUrl (entry: string): Plugin {
  return {
    name: 'own-import-meta-url',
    setup (b) {
      b.onLoad({ filter: /\.ts$/ }, (args) => {
        if (args.path === entry) return undefined
        const source = readFileSync(args.path, 'utf8')
        if (!source.includes('import.meta.')) return undefined
        const file = pathToFileURL(args.path)
        const contents = source
          .replace(/\bimport\.meta\.url\b/g, JSON.stringify(file.href))
          .replace(/\bimport\.meta\.filename\b/g, JSON.stringify(args.path))
          .replace(/\bimport\.meta\.dirname\b/g, JSON.stringify(fileURLToPath(new URL('.', file)).replace(/\/$/, '')))
        return { contents, loader: 'ts' }
      })
    }
  }
}
