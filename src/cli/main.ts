import { realpathSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Env } from '../config/index.ts'
import { ConfigError } from '../errors.ts'
import { VERSION } from '../version.ts'
import { resolveContext } from './context.ts'
import type { CliContext, StartServer } from './context.ts'
import { errorText } from './error-text.ts'
import { defaultStartServer, runServe, serveHelp } from './serve.ts'
import { OUTBOX_HELP, runOutbox } from './outbox.ts'
import { SIGN_HELP, runSign } from './sign.ts'
import { SINK_HELP, runSink } from './sink.ts'

/** Exit statuses (docs/configuration.md#exit-status). */
export const EXIT_OK = 0
export const EXIT_FAILURE = 1
export const EXIT_USAGE = 2

export const HELP = `Usage: streammeter <verb> [flags]

A streaming reverse proxy for video that meters the bytes each user receives
and reports them to a billing endpoint.

Verbs:
  serve   run the proxy (every setting is a flag: streammeter serve --help)
  sign    print a signed URL path for a user and file
  sink    run a reference report receiver
  outbox  list the undelivered reports; retry or drop the ones parked after
          the report endpoint refused them (list | retry | drop)

Flags:
  -h, --help      this help (also: streammeter <verb> --help)
  -v, --version   print the version

Exit status: 0 success, 1 runtime failure, 2 bad usage or configuration.
`

/** What tests may replace: streams, directory, clock, signals, and the server itself. */
export type CliOptions = Partial<CliContext> & {
  /** @default startServer of src/server/index.ts */
  startServer?: StartServer | undefined
}

/**
 * Run the command line. Never calls `process.exit` itself (except on a
 * second stop signal), so that tests run it in-process.
 * @param argv - the arguments after the script, e.g. `['sign', '--uid', 'u']`
 * @param env - environment variables (the entry point passes `process.env`)
 * @returns the exit status: 0 success, 1 runtime failure, 2 bad usage or configuration
 */
export async function main (argv: readonly string[], env: Env, options: CliOptions = {}): Promise<number> {
  const ctx = resolveContext(options)
  const [verb, ...rest] = argv
  try {
    switch (verb) {
      case undefined:
        ctx.stderr.write(HELP)
        return EXIT_USAGE
      case '-h':
      case '--help':
        ctx.stdout.write(HELP)
        return EXIT_OK
      case '-v':
      case '--version':
        ctx.stdout.write(`${VERSION}\n`)
        return EXIT_OK
      case 'help':
        return help(rest[0], ctx)
      case 'serve':
        return await runServe(rest, env, ctx, options.startServer ?? defaultStartServer)
      case 'sign':
        return runSign(rest, env, ctx)
      case 'sink':
        return await runSink(rest, ctx)
      case 'outbox':
        return await runOutbox(rest, env, ctx)
      default:
        ctx.stderr.write(verb.startsWith('-')
          ? `streammeter: unknown flag ${verb}; see streammeter --help\n`
          : `streammeter: unknown verb "${verb.slice(0, 40)}"; the verbs are serve, sign, sink and outbox (see streammeter --help)\n`)
        return EXIT_USAGE
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      ctx.stderr.write(`streammeter ${verb}: ${err.message}\n`)
      return EXIT_USAGE
    }
    ctx.stderr.write(`streammeter ${verb}: ${errorText(err)}\n`)
    return EXIT_FAILURE
  }
}

function help (verb: string | undefined, ctx: CliContext): number {
  const texts: Record<string, () => string> = { serve: serveHelp, sign: () => SIGN_HELP, sink: () => SINK_HELP, outbox: () => OUTBOX_HELP }
  const text = verb === undefined ? HELP : texts[verb]?.()
  if (text === undefined) {
    ctx.stderr.write('streammeter help: the verbs are serve, sign, sink and outbox\n')
    return EXIT_USAGE
  }
  ctx.stdout.write(text)
  return EXIT_OK
}

/**
 * The process entry (bin/streammeter.js and `node dist/cli/main.js`): runs
 * {@link main} with the process's arguments and environment and sets the exit
 * status. The process then ends on its own once everything is closed; should
 * something leak a handle, it is ended two seconds later rather than keeping
 * a stopped server's process alive.
 */
export async function runCli (): Promise<void> {
  const code = await main(process.argv.slice(2), process.env)
  process.exitCode = code
  setTimeout(() => process.exit(code), 2000).unref()
}

/** Whether this module is the script node was started with (not an import). */
function isEntryPoint (): boolean {
  const script = process.argv[1]
  if (script === undefined) return false
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url))
  } catch {
    return false
  }
}

if (isEntryPoint()) await runCli()
