/**
 * A one-line reason for the operator: the message and, when it adds
 * something, the code (`EADDRINUSE`, `SM_ERR_STORE`). Never a stack: the CLI
 * talks to people, and the logs have the rest.
 */
export function errorText (err: unknown): string {
  if (!(err instanceof Error)) return String(err)
  const code = (err as { code?: unknown }).code
  return typeof code === 'string' && !err.message.includes(code) ? `${err.message} (${code})` : err.message
}
