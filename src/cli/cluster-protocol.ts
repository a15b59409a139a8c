import type { Config } from '../config/index.ts'

// What the primary of `streammeter serve --workers N` and its workers say to
// each other over the cluster's IPC channel (advanced serialization, so a
// Config crosses as it is). One conversation per worker:
//
//   worker  → hello                      (listening for messages now)
//   primary → config                     (the primary's Config, loaded once)
//   worker  → listening                  (its server is up)
//   primary → stop                       (graceful stop; may come at any point)
//   worker  → closed                     (its server has stopped)
//   primary → finish { finalSeal }       (true for the last worker to close)

/**
 * The environment variable that marks a process as a worker of our own
 * primary (its value is the worker's number), so that `serve` run inside
 * somebody else's cluster (a process manager's cluster mode) is an ordinary
 * single server rather than a worker waiting for a primary that never speaks.
 */
export const WORKER_ENV = 'STREAMMETER_WORKER'

export type WorkerMessage =
  | { readonly type: 'streammeter:hello' }
  | { readonly type: 'streammeter:listening', readonly address: string }
  | { readonly type: 'streammeter:closed' }

export type PrimaryMessage =
  | { readonly type: 'streammeter:config', readonly config: Config }
  | { readonly type: 'streammeter:stop' }
  | { readonly type: 'streammeter:finish', readonly finalSeal: boolean }

/** `message` as one of ours, or undefined (cluster's own messages, anything else). */
export function asWorkerMessage (message: unknown): WorkerMessage | undefined {
  return isOurs(message) ? message as WorkerMessage : undefined
}

/** `message` as one of ours, or undefined. */
export function asPrimaryMessage (message: unknown): PrimaryMessage | undefined {
  return isOurs(message) ? message as PrimaryMessage : undefined
}

function isOurs (message: unknown): boolean {
  return typeof message === 'object' && message !== null &&
    typeof (message as { type?: unknown }).type === 'string' && (message as { type: string }).type.startsWith('streammeter:')
}
