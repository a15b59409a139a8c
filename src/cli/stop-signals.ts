import type { CliContext } from './context.ts'

/** The first SIGTERM/SIGINT of a long-running verb. */
export interface StopSignals {
  /** Resolves with the first signal. */
  readonly requested: Promise<NodeJS.Signals>
  /** Removes the handlers (after the verb has stopped). */
  dispose (): void
}

const SIGNALS = ['SIGTERM', 'SIGINT'] as const

/**
 * Handle SIGTERM and SIGINT for `verb`: the first asks for a graceful stop
 * (the caller closes, then returns 0); a second one, when the graceful stop
 * hangs or the operator is impatient, exits 1 at once.
 */
export function watchStopSignals (verb: string, ctx: CliContext): StopSignals {
  let resolveRequested!: (signal: NodeJS.Signals) => void
  const requested = new Promise<NodeJS.Signals>((resolve) => { resolveRequested = resolve })
  let received = 0
  const onSignal = (signal: NodeJS.Signals): void => {
    if (++received === 1) {
      ctx.stderr.write(`streammeter ${verb}: ${signal} received, stopping (send it again to force)\n`)
      resolveRequested(signal)
    } else {
      ctx.stderr.write(`streammeter ${verb}: ${signal} received again, exiting now\n`)
      ctx.exit(1)
    }
  }
  for (const s of SIGNALS) ctx.signals.on(s, onSignal)
  return {
    requested,
    dispose () {
      for (const s of SIGNALS) ctx.signals.off(s, onSignal)
    }
  }
}
