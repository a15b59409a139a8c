import { readFileSync, statSync } from 'node:fs'
import { isAbsolute, join, resolve } from 'node:path'
import * as util from 'node:util'
import { ConfigError } from '../errors.ts'
import {
  BOOLEAN_SETTINGS, SECRET_SETTINGS, SETTING_NAMES, UNECHOED_SETTINGS, configSchema, flagOf
} from './schema.ts'
import type { Config, SettingName } from './schema.ts'

/** Environment variables, as `process.env` holds them. */
export type Env = Readonly<Record<string, string | undefined>>

/** What {@link loadConfig} reads. */
export interface LoadConfigOptions {
  /** Environment variables; the CLI passes `process.env` (nothing else reads it). */
  env: Env
  /** `streammeter serve` flags, e.g. `['--port', '9000']`. @default [] */
  argv?: readonly string[] | undefined
  /** Where `.env` is looked for and relative paths resolve. @default process.cwd() */
  cwd?: string | undefined
}

/** What {@link loadConfig} resolved, and what it has to say about it. */
export interface LoadedConfig {
  readonly config: Config
  /** Settings-like environment variables that are no setting: the CLI prints one line each. */
  readonly warnings: readonly ConfigWarning[]
}

/** An environment variable that looks like a setting but is none (a typo, or another program's). */
export interface ConfigWarning {
  /** The variable's name (never its value: it may be a mistyped secret). */
  readonly variable: string
  /** The setting it is nearest to, when one is within three edits. */
  readonly suggestion: SettingName | undefined
  /** One line for the operator, e.g. `ORIGIN_CPU is not a setting and is ignored (did you mean ORIGIN_URL?)`. */
  readonly message: string
}

/**
 * Prefixes that belong to streammeter: a variable with one of them that is no
 * setting is likely a typo (`TRAFFIC_MIN_BYTE`). In the environment it is
 * warned about, not refused: the environment is shared with other software
 * and an orchestrator's stray `ORIGIN_*` must not stop a proxy
 * (docs/configuration.md). In `.env` and on the command line, which are
 * streammeter's alone, it stops the start. Other variables (PATH, HOME, the platform's own) are none of
 * our business.
 */
const OWN_PREFIXES = /^(?:TRAFFIC|ORIGIN|STORE|SIGNING|SHUTDOWN|ADMIN|CORS|TRUSTED|SEND|PLAYLIST|PUBLIC|MAX_TRANSFERS)_/

/**
 * Variables Kubernetes injects for a Service named `origin`, `store`, `admin`…
 * (`ORIGIN_SERVICE_HOST`, `STORE_PORT_6379_TCP_ADDR`, …). They share our
 * prefixes but are not typos, so they must not stop the start.
 */
const SERVICE_LINKS = /^[A-Z0-9_]+_(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?|PORT(?:_\d+_(?:TCP|UDP|SCTP)(?:_(?:ADDR|PORT|PROTO))?)?)$/

const SETTINGS: ReadonlySet<string> = new Set(SETTING_NAMES)
const FLAG_NAMES = new Map<string, SettingName>(SETTING_NAMES.map((name) => [flagOf(name).slice(2), name]))

/** A setting's value and where it came from, for messages. */
interface Sourced {
  value: string
  from: string
}

/**
 * The configuration from, in order of precedence, `argv` flags, `env`, the
 * `.env` file in `cwd`, and the defaults. Empty values count as unset.
 * Relative paths (`ORIGIN_ROOT`, `sqlite:PATH`) are resolved against `cwd`.
 * The configuration is deep-frozen. Prints nothing: unknown settings-like
 * environment variables come back as `warnings` for the caller to show.
 * @throws {ConfigError} naming the first invalid setting, unknown flag or
 *   unknown `.env` key; the message never contains a secret.
 */
export function loadConfig (options: LoadConfigOptions): LoadedConfig {
  const cwd = options.cwd ?? process.cwd()
  const flags = parseSettingFlags(options.argv ?? [])
  const dotenv = readDotEnv(cwd)
  const warnings = unknownVariables(options.env).map(warnAbout)
  const unknownInDotEnv = unknownVariables(dotenv)[0]
  if (unknownInDotEnv !== undefined) {
    throw new ConfigError(unknownInDotEnv, `unknown setting (in .env)${didYouMean(nearest(unknownInDotEnv, SETTING_NAMES))}`)
  }

  const values = new Map<SettingName, Sourced>()
  for (const name of SETTING_NAMES) {
    const picked = pick(name, flags.get(name), flagOf(name)) ??
      pick(name, options.env[name], 'the environment') ??
      pick(name, dotenv[name], '.env')
    if (picked !== undefined) values.set(name, picked)
  }

  const result = configSchema.safeParse(Object.fromEntries([...values].map(([k, v]) => [k, v.value])))
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const name = String(issue.path[0] ?? 'configuration')
      const quotes = issue.code === 'custom' && issue.params?.['quotes'] === true
      return { name, text: describeProblem(name, issue.message, values.get(name as SettingName), !quotes) }
    })
    const [first, ...rest] = problems as [typeof problems[number], ...typeof problems]
    throw new ConfigError(first.name, first.text + rest.map((p) => `\n  ${p.name}: ${p.text}`).join(''))
  }

  let config = result.data
  if (config.origin.kind === 'fs') {
    const root = resolve(cwd, config.origin.root)
    if (!isDirectory(root)) {
      throw new ConfigError('ORIGIN_ROOT', describeProblem('ORIGIN_ROOT', `no such directory: ${root}`, values.get('ORIGIN_ROOT'), false))
    }
    config = { ...config, origin: { kind: 'fs', root } }
  }
  const sqlitePath = /^sqlite:(.*)$/s.exec(config.storeUrl)?.[1]
  if (sqlitePath !== undefined && sqlitePath !== ':memory:' && !isAbsolute(sqlitePath)) {
    // Resolved here, not at open time, so that the store is where the startup
    // log says, whatever the process's directory later is.
    config = { ...config, storeUrl: `sqlite:${resolve(cwd, sqlitePath)}` }
  }
  config = { ...config, engineDir: resolve(cwd, config.engineDir) }
  return { config: deepFreeze(config), warnings }
}

/**
 * One setting from `env`, else from `.env` in `cwd` (empty = unset), without
 * validating anything else: for verbs such as `sign` that need a single value
 * and must not fail over an unrelated setting.
 */
export function readSetting (name: SettingName, options: { env: Env, cwd?: string | undefined }): string | undefined {
  return pick(name, options.env[name], '')?.value ?? pick(name, readDotEnv(options.cwd ?? process.cwd())[name], '')?.value
}

/**
 * The variables of `.env` in `cwd` (node's own parser, `util.parseEnv`), or
 * none when there is no such file.
 * @throws {ConfigError} when the file exists but cannot be read
 */
export function readDotEnv (cwd: string): Env {
  let text: string
  try {
    text = readFileSync(join(cwd, '.env'), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {}
    throw new ConfigError('.env', `cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
  }
  // util.parseEnv arrived in Node 20.12; on an older 20.x say so rather than
  // failing to load the module at all.
  if (typeof util.parseEnv !== 'function') throw new ConfigError('.env', 'reading .env needs Node.js 20.12 or later')
  return util.parseEnv(text)
}

/** A set value (secrets as given, others trimmed), or undefined when unset or empty. */
function pick (name: SettingName, raw: string | undefined, from: string): Sourced | undefined {
  if (raw === undefined) return undefined
  const value = SECRET_SETTINGS.has(name) ? raw : raw.trim()
  return value === '' ? undefined : { value, from }
}

/** Set variables with one of our prefixes that are no setting (nor a Kubernetes service link). */
function unknownVariables (vars: Env): string[] {
  const out: string[] = []
  for (const [name, value] of Object.entries(vars)) {
    if (!OWN_PREFIXES.test(name) || SETTINGS.has(name) || SERVICE_LINKS.test(name) || value === undefined || value === '') continue
    out.push(name)
  }
  return out
}

function warnAbout (variable: string): ConfigWarning {
  const suggestion = nearest(variable, SETTING_NAMES)
  return { variable, suggestion, message: `${variable} is not a setting and is ignored${didYouMean(suggestion)}` }
}

/**
 * `streammeter serve` flags: one per setting (`--traffic-min-bytes 5` or
 * `--traffic-min-bytes=5`); a bare boolean flag means true. Hand-checked
 * tokens rather than `strict` mode, whose messages are long and would repeat
 * a positional argument (possibly a mistyped secret).
 */
function parseSettingFlags (argv: readonly string[]): Map<SettingName, string> {
  const args = argv.map((arg, i) => {
    const name = arg.startsWith('--') ? FLAG_NAMES.get(arg.slice(2)) : undefined
    const next = argv[i + 1]
    return name !== undefined && BOOLEAN_SETTINGS.has(name) && (next === undefined || next.startsWith('-')) ? `${arg}=true` : arg
  })
  const { tokens } = util.parseArgs({
    args,
    options: Object.fromEntries([...FLAG_NAMES.keys()].map((flag) => [flag, { type: 'string' as const }])),
    strict: false,
    allowPositionals: true,
    tokens: true
  })
  const out = new Map<SettingName, string>()
  for (const token of tokens) {
    if (token.kind === 'option-terminator') continue
    if (token.kind === 'positional') {
      throw new ConfigError('serve', `unexpected argument #${token.index + 1}: settings are flags, e.g. --port 8080`)
    }
    const name = FLAG_NAMES.get(token.name)
    if (name === undefined || !token.rawName.startsWith('--')) {
      throw new ConfigError(token.rawName, `unknown flag${didYouMean(nearest(token.rawName, SETTING_NAMES.map(flagOf)))}; see streammeter serve --help`)
    }
    // `--port --host x`: parseArgs would take "--host" as the port.
    if (token.value === undefined || (!token.inlineValue && token.value.startsWith('--'))) {
      throw new ConfigError(token.rawName, `needs a value, e.g. ${token.rawName}=…`)
    }
    out.set(name, token.value)
  }
  return out
}

/** The reason, the bad value unless it may be secret, and where it came from. */
function describeProblem (name: string, reason: string, source: Sourced | undefined, echo = true): string {
  let text = reason
  if (source !== undefined) {
    if (echo && !UNECHOED_SETTINGS.has(name as SettingName)) text += `, got ${JSON.stringify(truncate(source.value))}`
    text += ` (from ${source.from})`
  }
  return text
}

function truncate (s: string): string {
  return s.length > 60 ? s.slice(0, 57) + '…' : s
}

/** ` (did you mean X?)`, or '' without a suggestion. */
function didYouMean (suggestion: string | undefined): string {
  return suggestion === undefined ? '' : ` (did you mean ${suggestion}?)`
}

/** The nearest of `candidates` to `name` within 3 edits, ignoring case. */
function nearest<T extends string> (name: string, candidates: readonly T[]): T | undefined {
  let best: T | undefined
  let bestDistance = 4
  for (const c of candidates) {
    const d = editDistance(name.toUpperCase(), c.toUpperCase())
    if (d < bestDistance) {
      best = c
      bestDistance = d
    }
  }
  return best
}

function editDistance (a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min((prev[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    prev = row
  }
  return prev[b.length] ?? 0
}

function isDirectory (path: string): boolean {
  try {
    return statSync(path).isDirectory()
  } catch {
    return false
  }
}

function deepFreeze<T> (value: T): T {
  if (typeof value === 'object' && value !== null) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}
