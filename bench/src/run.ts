/**
 * Entry point of this package's benchmarks, kept out of `npm test`: timings
 * belong in side-by-side runs, never in timed unit tests (bench/README.md).
 *
 *   npm run bench                                   every suite
 *   node --expose-gc --import tsx src/run.ts record [scenario ...]
 *   node --import tsx src/run.ts redis [flush|chunks|seal|memory|e2e|e2e-wrk ...]
 *
 * Each suite runs its measurements in child processes of its own. Exit code 1
 * when a correctness check failed (a missed target is reported, not fatal).
 */
import { runRecordSuite } from './record-suite.ts'

/** Suites by name; each takes optional scenario ids and resolves false on a failed check. */
const SUITES = new Map<string, (ids: readonly string[]) => Promise<boolean>>([
  ['proxy', async (ids) => await (await import('./proxy-suite.ts')).runProxySuite(ids)],
  ['record', runRecordSuite],
  ['redis', async (ids) => await (await import('./redis-suite.ts')).runRedisSuite(ids)]
])

async function main (argv: readonly string[]): Promise<number> {
  const [name, ...ids] = argv
  if (name !== undefined) {
    const suite = SUITES.get(name)
    if (suite === undefined) {
      process.stderr.write(`unknown suite ${name} (have ${[...SUITES.keys()].join(', ')})\n`)
      return 2
    }
    return (await suite(ids)) ? 0 : 1
  }
  let ok = true
  for (const suite of SUITES.values()) ok = (await suite([])) && ok
  return ok ? 0 : 1
}

process.exitCode = await main(process.argv.slice(2))
