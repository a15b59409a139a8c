import { parseArgs } from 'node:util'
import { ConfigError } from '../errors.ts'

/** One flag of a verb: `--name value` (string) or `--name` (boolean). */
export interface FlagSpec {
  type: 'string' | 'boolean'
  short?: string
}

/** Parsed flags: a string per given string flag, `true` per given boolean flag. */
export type Flags<S extends Record<string, FlagSpec>> = {
  [K in keyof S]?: S[K]['type'] extends 'boolean' ? true : string
}

/**
 * The flags of one verb. Unknown flags, missing values and positional
 * arguments are usage errors naming the flag (exit 2). The tokens are checked
 * by hand rather than with `strict` mode, whose messages are long and would
 * repeat a stray argument (possibly a mistyped secret).
 * @throws {ConfigError}
 */
export function parseFlags<S extends Record<string, FlagSpec>> (verb: string, argv: readonly string[], spec: S): Flags<S> {
  const { tokens } = parseArgs({ args: [...argv], options: spec, strict: false, allowPositionals: true, tokens: true })
  const out: Record<string, string | true> = {}
  for (const token of tokens) {
    if (token.kind === 'option-terminator') continue
    if (token.kind === 'positional') {
      throw new ConfigError(verb, `unexpected argument #${token.index + 1}; see streammeter ${verb} --help`)
    }
    const flag = spec[token.name]
    if (flag === undefined || (!token.rawName.startsWith('--') && flag.short === undefined)) {
      throw new ConfigError(token.rawName, `unknown flag; see streammeter ${verb} --help`)
    }
    if (flag.type === 'boolean') {
      if (token.value !== undefined) throw new ConfigError(token.rawName, 'takes no value')
      out[token.name] = true
      continue
    }
    // `--uid --path x`: parseArgs would take "--path" as the uid.
    if (token.value === undefined || token.value === '' || (!token.inlineValue && token.value.startsWith('--'))) {
      throw new ConfigError(token.rawName, `needs a value, e.g. ${token.rawName}=…`)
    }
    out[token.name] = token.value
  }
  return out as Flags<S>
}

/** A TCP port flag: 0–65535. @throws {ConfigError} */
export function portFlag (flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback
  const n = /^\d{1,5}$/.test(value) ? Number(value) : NaN
  if (!(n <= 65535)) throw new ConfigError(flag, `must be a TCP port number (0–65535), got ${JSON.stringify(value)}`)
  return n
}

/** Whether `argv` asks for help (`--help` or `-h` anywhere). */
export function wantsHelp (argv: readonly string[]): boolean {
  return argv.includes('--help') || argv.includes('-h')
}
