/**
 * The logging the metering library needs: a subset of pino's API, so that the
 * server passes Fastify's logger and library users pass pino, console-like
 * adapters or nothing.
 */
export interface MeterLogger {
  debug (obj: object, msg?: string): void
  info (obj: object, msg?: string): void
  warn (obj: object, msg?: string): void
  error (obj: object, msg?: string): void
}

const noop = (): void => {}

/** Logs nothing. */
export const silentLogger: MeterLogger = Object.freeze({ debug: noop, info: noop, warn: noop, error: noop })
