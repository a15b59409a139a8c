/**
 * The fault suite: `npm run faults` (or `npm run faults -- <name filter>`).
 * Runs every scenario against real processes, prints one table (fault,
 * bytes delivered, billed, lost, doubled, requests failed) and exits 1 when
 * a row misses the target: nothing doubled anywhere, nothing lost beyond
 * what docs/metering.md#rules allows a crash (the last flush interval). The table is
 * what docs/reliability.md quotes.
 */
import { crashFaults } from './crash-faults.ts'
import { loadFaults } from './load-faults.ts'
import { receiverFaults } from './receiver-faults.ts'
import { meetsTarget } from './scenario.ts'
import type { FaultRow } from './scenario.ts'

const filter = process.argv.slice(2).join(' ').toLowerCase()
const scenarios = [...receiverFaults, ...crashFaults, ...loadFaults]
const rows: FaultRow[] = []
const started = Date.now()
for (const scenario of scenarios) {
  if (filter !== '' && !scenario.name.toLowerCase().includes(filter)) continue
  let row: FaultRow
  const t0 = Date.now()
  try {
    row = await scenario.run()
  } catch (err) {
    row = { fault: scenario.name, delivered: 0, billed: 0, lost: 0, doubled: 0, allowedLoss: 0, requests: 0, failed: 0, note: `ERROR: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}` }
    row.lost = -1
  }
  rows.push(row)
  process.stderr.write(`${meetsTarget(row) ? 'ok  ' : 'MISS'} ${row.fault} (${((Date.now() - t0) / 1000).toFixed(1)} s)\n`)
}

const fmt = (n: number): string => n.toLocaleString('en-US')
const lines = [
  '| fault | bytes delivered | bytes billed | bytes lost | bytes doubled | requests failed | |',
  '|---|---:|---:|---:|---:|---:|---|',
  ...rows.map((r) => `| ${r.fault} | ${fmt(r.delivered)} | ${fmt(r.billed)} | ${r.lost < 0 ? 'error' : fmt(r.lost)}${r.allowedLoss > 0 ? ` (≤ ${fmt(r.allowedLoss)} allowed)` : ''} | ${fmt(r.doubled)} | ${fmt(r.failed)} of ${fmt(r.requests)} | ${r.note} |`)
]
process.stdout.write(lines.join('\n') + '\n')
process.stderr.write(`${rows.length} faults in ${((Date.now() - started) / 1000).toFixed(0)} s\n`)
process.exitCode = rows.every(meetsTarget) ? 0 : 1
