import { mkdirSync, symlinkSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

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
 * `node_modules` link to the repository's packages and a `web` link to its
 * dashboard files (read at start, two levels above the module, as from
 * dist/); the peers' next to a link to this package's node_modules (which
 * finds the repository's fastify one level up, as from bench/src/).
 */
export async function bundleNodeTargets (dir: string): Promise<Record<BundleName, string>> {
  const peers = join(dir, 'peers')
  mkdirSync(peers, { recursive: true })
  symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'), 'dir')
  symlinkSync(join(REPO, 'web'), join(dir, 'web'), 'dir')
  symlinkSync(join(BENCH, 'node_modules'), join(peers, 'node_modules'), 'dir')
  const own = join(dir, 'dist', 'cli')
  mkdirSync(own, { recursive: true })
  const out = {} as Record<BundleName, string>
  for (const [name, entry] of Object.entries(ENTRIES) as Array<[BundleName, string]>) {
    const file = join(name === 'streammeter' ? own : peers, `${name}.mjs`)
    await build({
      entryPoints: [entry],
      outfile: file,
      bundle: true,
      packages: 'external',
      platform: 'node',
      format: 'esm',
      target: 'node20',
      logLevel: 'warning'
    })
    out[name] = file
  }
  return out
}
