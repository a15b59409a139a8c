import { pino } from 'pino'
import type { Logger } from 'pino'

/**
 * The server's logger: pino, JSON lines on stdout. Secrets are
 * redacted wherever they could appear; request lines are never logged raw
 * because signed URLs carry tokens.
 */
export function createLogger (level: string, destination?: NodeJS.WritableStream): Logger {
  return pino({
    level,
    base: { pid: process.pid },
    redact: {
      paths: [
        'authorization', 'headers.authorization', 'req.headers.authorization', 'req.headers.cookie',
        'apiKey', 'token', 'secret', 'signingSecret', 'adminToken', 'trafficApiKey', '*.apiKey', '*.token'
      ],
      censor: '[redacted]'
    }
  }, destination as pino.DestinationStream | undefined)
}

/** A request target with the values of credential-like query parameters replaced, for logs. */
export function redactTarget (target: string): string {
  const q = target.indexOf('?')
  if (q === -1) return target
  return target.slice(0, q + 1) + target.slice(q + 1).replace(/(^|&)(token|sig|signature|key|api_key)=[^&]*/gi, '$1$2=[redacted]')
}
