import { resolve } from 'node:path'
import { startSink } from '../sink/index.ts'
import type { RunningSink } from '../sink/index.ts'
import { parseFlags, portFlag, wantsHelp } from './args.ts'
import type { CliContext } from './context.ts'
import { errorText } from './error-text.ts'
import { watchStopSignals } from './stop-signals.ts'

export const SINK_HELP = `Usage: streammeter sink [--port 9090] [--host 127.0.0.1] [--api-key K] [--db FILE]

A reference report receiver, for development, tests and as a starting point.
Accepts a report POSTed (JSON) to any path, checks the key, keeps each
Idempotency-Key once (a repeat answers 200 {"duplicate":true}) and serves:
  GET /totals   { "<uid>": <total bytes>, ... } over the unique reports
  GET /reports  the unique reports, oldest first

Flags:
  --port N       TCP port (0 takes a free one) [default: 9090]
  --host H       address to listen on [default: 127.0.0.1]
  --api-key K    require "Authorization: Bearer K" on reports (else 401)
  --db FILE      SQLite file to keep reports in [default: :memory:]
  -h, --help     this help

Stops on SIGTERM/SIGINT. Exit status: 0 stopped, 1 failed, 2 bad usage.
`

const SPEC = {
  port: { type: 'string' },
  host: { type: 'string' },
  'api-key': { type: 'string' },
  db: { type: 'string' },
  help: { type: 'boolean', short: 'h' }
} as const

/** `streammeter sink`: run the receiver until SIGTERM/SIGINT. @throws {ConfigError} for bad usage (exit 2) */
export async function runSink (argv: readonly string[], ctx: CliContext): Promise<number> {
  if (wantsHelp(argv)) {
    ctx.stdout.write(SINK_HELP)
    return 0
  }
  const flags = parseFlags('sink', argv, SPEC)
  const port = portFlag('--port', flags.port, 9090)
  const stop = watchStopSignals('sink', ctx)
  try {
    let sink: RunningSink
    try {
      sink = await startSink({
        port,
        host: flags.host ?? '127.0.0.1',
        apiKey: flags['api-key'],
        db: flags.db === undefined || flags.db === ':memory:' ? ':memory:' : resolve(ctx.cwd, flags.db),
        onReport: (e) => {
          ctx.stdout.write(`${e.duplicate ? 'duplicate' : 'report'} ${e.reportId}: ${e.uids} uids, ${e.bytes} bytes\n`)
        }
      })
    } catch (err) {
      ctx.stderr.write(`streammeter sink: could not start: ${errorText(err)}\n`)
      return 1
    }
    ctx.stderr.write(`streammeter sink: listening on ${sink.url} (POST reports to any path; GET /totals, /reports)\n`)
    await stop.requested
    await sink.close()
    return 0
  } finally {
    stop.dispose()
  }
}
