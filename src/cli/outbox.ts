import { existsSync } from 'node:fs'
import { BOOLEAN_SETTINGS, flagOf, loadConfig, toMeterOptions } from '../config/index.ts'
import type { Config, Env } from '../config/index.ts'
import { ConfigError, ReportNotParkedError } from '../errors.ts'
import { outboxView, policyOf, resolveMeterOptions } from '../meter/index.ts'
import type { OutboxItem, UsageStore } from '../meter/index.ts'
import { openStore, parseStoreUrl } from '../store/index.ts'
import type { CliContext } from './context.ts'
import { outboxTable } from './outbox-table.ts'

export const OUTBOX_HELP = `Usage: streammeter outbox <list | retry | drop> [id] [flags]

Shows and replays the reports in the store's outbox: those waiting for
delivery and those parked after the report endpoint refused them
TRAFFIC_REPORT_MAX_REJECTIONS times. Works on the store of STORE_URL and
STORE_PREFIX, read like streammeter serve reads its settings (flags, the
environment, .env), while the server runs or not.

  streammeter outbox list [--json]
      pending reports in delivery order, then parked ones: id, seq,
      creation time, uids, bytes of usage, body size, attempts, state and
      the last error (with the endpoint's status); --json prints the
      document of GET /api/outbox
  streammeter outbox retry <id> | --all
      put a parked report (or all of them) back at the head of delivery,
      with the same report_id and the same bytes
  streammeter outbox drop <id> [--force]
      delete a parked report for good: its usage is never billed (counted
      in reports_dropped); --force drops a report that is not parked too

Flags:
  --json        list as JSON
  --all         retry every parked report
  --force       drop a report even if it is not parked
  --<setting>   any setting of streammeter serve, e.g. --store-url redis://host
  -h, --help    this help

Exit status: 0 done, 1 the store failed, 2 bad usage or configuration, or
a report that is not in the outbox or not parked.
`

type Action = 'list' | 'retry' | 'drop'
const ACTIONS: readonly Action[] = ['list', 'retry', 'drop']
/** The verb's own flags, and the actions each belongs to. */
const OWN_FLAGS = { '--json': 'list', '--all': 'retry', '--force': 'drop' } as const
type OwnFlag = keyof typeof OWN_FLAGS

interface Parsed {
  action: Action
  id: string | undefined
  flags: Set<OwnFlag>
  /** Setting flags (and their values), for loadConfig. */
  settings: string[]
}

/**
 * `streammeter outbox list|retry|drop`.
 * @returns 0 done, 1 the store failed (thrown to main), 2 a report not in the outbox or not parked
 * @throws {ConfigError} for bad usage or settings (exit 2)
 */
export async function runOutbox (argv: readonly string[], env: Env, ctx: CliContext): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    ctx.stdout.write(OUTBOX_HELP)
    return 0
  }
  const parsed = parse(argv)
  const { config, warnings } = loadConfig({ env, argv: parsed.settings, cwd: ctx.cwd })
  for (const w of warnings) ctx.stderr.write(`streammeter outbox: warning: ${w.message}\n`)
  const store = await open(config)
  try {
    switch (parsed.action) {
      case 'list':
        return await list(store, parsed.flags.has('--json'), ctx)
      case 'retry':
        return await retry(store, parsed.id, ctx)
      case 'drop':
        return await drop(store, parsed.id as string, parsed.flags.has('--force'), ctx)
    }
  } finally {
    await store.close()
  }
}

function parse (argv: readonly string[]): Parsed {
  const [action, ...rest] = argv
  if (!ACTIONS.includes(action as Action)) {
    const what = action === undefined ? 'missing' : `unknown: "${action.slice(0, 40)}"`
    throw new ConfigError('action', `${what}; use list, retry or drop (see streammeter outbox --help)`)
  }
  const parsed: Parsed = { action: action as Action, id: undefined, flags: new Set(), settings: [] }
  const positionals: string[] = []
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i] as string
    if (arg === '--') {
      positionals.push(...rest.slice(i + 1))
      break
    }
    const own = arg.split('=')[0] as OwnFlag
    if (own in OWN_FLAGS) {
      if (arg.includes('=')) throw new ConfigError(own, 'takes no value')
      if (OWN_FLAGS[own] !== parsed.action) throw new ConfigError(own, `is a flag of streammeter outbox ${OWN_FLAGS[own]}`)
      parsed.flags.add(own)
    } else if (arg.startsWith('-')) {
      // A setting: loadConfig checks it. Its value is the next argument unless given with "=".
      parsed.settings.push(arg)
      const next = rest[i + 1]
      if (!arg.includes('=') && !isBooleanSetting(arg) && next !== undefined && !next.startsWith('--')) parsed.settings.push(rest[++i] as string)
    } else {
      positionals.push(arg)
    }
  }
  if (positionals.length > 1 || (parsed.action === 'list' && positionals.length > 0)) {
    throw new ConfigError(parsed.action, `unexpected argument "${(positionals.at(-1) ?? '').slice(0, 40)}"; see streammeter outbox --help`)
  }
  parsed.id = positionals[0]
  if (parsed.action === 'retry' && (parsed.id === undefined) === !parsed.flags.has('--all')) {
    throw new ConfigError('retry', 'needs a report id or --all (not both)')
  }
  if (parsed.action === 'drop' && parsed.id === undefined) throw new ConfigError('drop', 'needs a report id')
  return parsed
}

function isBooleanSetting (flag: string): boolean {
  for (const name of BOOLEAN_SETTINGS) if (flagOf(name) === flag) return true
  return false
}

/**
 * The store of `config`, as serve opens it. A sqlite file that does not
 * exist is refused rather than created (a wrong directory would show an
 * empty outbox), and `memory:` has no outbox outside its server process.
 */
async function open (config: Config): Promise<UsageStore> {
  const location = parseStoreUrl(config.storeUrl)
  if (location.kind === 'memory' || (location.kind === 'sqlite' && location.path === ':memory:')) {
    throw new ConfigError('STORE_URL', `${config.storeUrl} keeps the outbox inside the server's process; streammeter outbox needs sqlite:PATH or redis://…`)
  }
  if (location.kind === 'sqlite' && !existsSync(location.path)) {
    throw new ConfigError('STORE_URL', `no sqlite store at ${location.path}: set STORE_URL (or --store-url) as the server has it, or run this where the server runs`)
  }
  const meter = resolveMeterOptions(toMeterOptions(config))
  return await openStore(config.storeUrl, policyOf(meter), { prefix: config.storePrefix })
}

async function list (store: UsageStore, json: boolean, ctx: CliContext): Promise<number> {
  const [stats, items] = await Promise.all([store.outboxStats(), store.outboxList()])
  if (json) {
    ctx.stdout.write(JSON.stringify(outboxView(stats, items, ctx.now()), null, 2) + '\n')
    return 0
  }
  if (items.length > 0) ctx.stdout.write(outboxTable(items))
  ctx.stdout.write(`${stats.pending} pending (${stats.pendingBytes} bytes of usage), ${stats.parked} parked (${stats.parkedBytes} bytes of usage)\n`)
  return 0
}

async function retry (store: UsageStore, id: string | undefined, ctx: CliContext): Promise<number> {
  const retried = await store.outboxRetry(id ?? { all: true })
  if (id !== undefined && retried.length === 0) return await notParked(store, id, ctx)
  if (retried.length === 0) ctx.stdout.write('no parked reports\n')
  for (const reportId of retried) ctx.stdout.write(`put back at the head of delivery: ${reportId}\n`)
  return 0
}

async function drop (store: UsageStore, id: string, force: boolean, ctx: CliContext): Promise<number> {
  const result = await store.outboxDrop(id, { force })
  if (result === 'unknown') return await notParked(store, id, ctx)
  if (result === 'not-parked') {
    ctx.stderr.write(`streammeter outbox drop: ${new ReportNotParkedError(id).message} (--force drops it anyway)\n`)
    return 2
  }
  ctx.stdout.write(dropped(result))
  return 0
}

function dropped (item: OutboxItem): string {
  const state = item.parkedAt === undefined ? 'pending' : 'parked'
  return `dropped ${state} report ${item.reportId} for good: ${item.uids} uids, ${item.bytes} bytes of usage will not be billed\n`
}

/** Exit 2 for an id that names no parked report, saying whether it is pending or unknown. */
async function notParked (store: UsageStore, id: string, ctx: CliContext): Promise<number> {
  const pending = (await store.outboxList()).some((e) => e.reportId === id)
  const why = pending ? new ReportNotParkedError(id).message : `no report ${id.slice(0, 200)} in the outbox`
  ctx.stderr.write(`streammeter outbox: ${why}\n`)
  return 2
}
