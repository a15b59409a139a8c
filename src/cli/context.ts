import type { Config } from '../config/index.ts'

/** Where text goes: `process.stdout`, `process.stderr` or a test's buffer. */
export interface TextSink {
  write (text: string): unknown
}

/** Where SIGTERM/SIGINT come from: `process`, or an EventEmitter in tests. */
export interface SignalSource {
  on (signal: 'SIGTERM' | 'SIGINT', listener: (signal: NodeJS.Signals) => void): unknown
  off (signal: 'SIGTERM' | 'SIGINT', listener: (signal: NodeJS.Signals) => void): unknown
}

/**
 * What a verb may touch besides its arguments and environment, so that tests
 * run the CLI in-process with their own streams, directory, clock and signals.
 */
export interface CliContext {
  /** @default process.stdout */
  stdout: TextSink
  /** @default process.stderr */
  stderr: TextSink
  /** Where `.env` is read and relative paths resolve. @default process.cwd() */
  cwd: string
  /** @default process */
  signals: SignalSource
  /** Called only to force an exit (a second stop signal). @default process.exit */
  exit: (code: number) => void
  /** Milliseconds since the epoch. @default Date.now */
  now: () => number
}

/** `partial` completed with the process's own streams, directory, signals and clock. */
export function resolveContext (partial: Partial<CliContext> = {}): CliContext {
  return {
    stdout: partial.stdout ?? process.stdout,
    stderr: partial.stderr ?? process.stderr,
    cwd: partial.cwd ?? process.cwd(),
    signals: partial.signals ?? process,
    exit: partial.exit ?? ((code) => process.exit(code)),
    now: partial.now ?? Date.now
  }
}

/** What the serve verb needs of a started server. */
export interface RunningServerLike {
  /** Where it listens, for the startup line. */
  readonly address: string
  /** Graceful stop (docs/metering.md#rules); called once. */
  close (): Promise<void>
}

/** The contract of `src/server/index.ts`'s `startServer`, checked where serve.ts uses it. */
export type StartServer = (config: Config) => Promise<RunningServerLike>
