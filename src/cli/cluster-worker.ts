import cluster from 'node:cluster'
import type { Config } from '../config/index.ts'
import { ConfigError, StoreUrlError } from '../errors.ts'
import { policyOf } from '../meter/index.ts'
import { createCollector, createLogger, meterOptionsOf } from '../server/index.ts'
import { openStore } from '../store/index.ts'
import { asPrimaryMessage } from './cluster-protocol.ts'
import type { PrimaryMessage, WorkerMessage } from './cluster-protocol.ts'
import type { CliContext, StartServer } from './context.ts'
import { errorText } from './error-text.ts'
import { watchStopSignals } from './stop-signals.ts'

/**
 * One worker of `streammeter serve --workers N`: the ordinary server with the
 * primary's configuration, on the port the workers share.
 *
 * It stops gracefully on the primary's `stop` message and on SIGTERM/SIGINT
 * sent to it directly (a terminal's Ctrl-C and systemd's default stop reach
 * every process of the group; the primary's forwarding is a message, so that
 * the two together do not count as the "second signal" that forces an exit).
 * When the primary is gone (killed), node's cluster ends the worker at once:
 * a crash of the service, which loses at most the last flush interval.
 * @param index - the worker's number, 1…N
 * @returns 0 after a clean stop, 1 when starting or stopping failed, 2 for a configuration problem
 */
export async function runWorker (index: number, ctx: CliContext, start: StartServer): Promise<number> {
  const verb = `serve (worker ${index})`
  const say = (line: string): void => { ctx.stderr.write(`streammeter ${verb}: ${line}\n`) }
  const primary = new PrimaryLink()
  const signals = watchStopSignals(verb, ctx)
  try {
    const config = await primary.config
    const stopRequested = Promise.race([signals.requested, primary.stopRequested])
    let server
    try {
      server = await start(config)
    } catch (err) {
      if (err instanceof ConfigError || err instanceof StoreUrlError) {
        say(err.message)
        return 2
      }
      say(`could not start: ${errorText(err)}`)
      return 1
    }
    primary.send({ type: 'streammeter:listening', address: server.address })
    await stopRequested
    // The server's own stop runs to this deadline too (SHUTDOWN_GRACE from now).
    const deadline = Date.now() + config.shutdownGrace * 1000
    try {
      await server.close()
    } catch (err) {
      say(`stopping failed: ${errorText(err)}`)
      return 1
    }
    if (config.trafficCollectorEnabled && await primary.finish()) {
      try {
        await finalSeal(config, deadline)
      } catch (err) {
        say(`the final seal failed (the usage stays in the store for the next start): ${errorText(err)}`)
        return 1
      }
    }
    return 0
  } finally {
    signals.dispose()
    primary.dispose()
  }
}

/**
 * The last worker to stop seals and delivers once more, over a store handle of
 * its own. Each worker's stop flushes its usage, but only the lease holder of
 * the moment seals: a worker that flushes after the reporter's final seal,
 * while the reporter still holds the lease (it is delivering), seals nothing,
 * and without this pass its bytes would wait in the store for the next start
 * instead of going out now. With nothing left to seal it is one empty seal.
 */
async function finalSeal (config: Config, deadline: number): Promise<void> {
  const meter = meterOptionsOf(config)
  const store = await openStore(config.storeUrl, policyOf(meter), { prefix: config.storePrefix })
  try {
    await createCollector(meter, store, createLogger(config.logLevel)).close({ grace: Math.max(1, (deadline - Date.now()) / 1000) })
  } finally {
    await store.close()
  }
}

/** This worker's side of the IPC channel to the primary. */
class PrimaryLink {
  /** The configuration, once the primary has sent it. */
  readonly config: Promise<Config>
  /** Resolves on the primary's `stop`. */
  readonly stopRequested: Promise<void>
  #resolveConfig!: (config: Config) => void
  #resolveStop!: () => void
  #finish: ((finalSeal: boolean) => void) | undefined
  readonly #onMessage = (message: unknown): void => this.#receive(asPrimaryMessage(message))

  constructor () {
    this.config = new Promise((resolve) => { this.#resolveConfig = resolve })
    this.stopRequested = new Promise((resolve) => { this.#resolveStop = resolve })
    process.on('message', this.#onMessage)
    // Only now that the listener is in place: the primary answers at once.
    this.send({ type: 'streammeter:hello' })
  }

  send (message: WorkerMessage): void {
    if (process.connected) process.send?.(message)
  }

  /** Tell the primary this server has stopped; resolves whether to run the final seal. */
  finish (): Promise<boolean> {
    if (!process.connected) return Promise.resolve(false)
    const answer = new Promise<boolean>((resolve) => { this.#finish = resolve })
    this.send({ type: 'streammeter:closed' })
    return answer
  }

  /**
   * Stop listening and close the channel, so that the process can end with
   * its exit status. Through the cluster worker's own disconnect: a bare
   * `process.disconnect()` looks to node's cluster like a lost primary, and
   * it would exit 0 at once.
   */
  dispose (): void {
    process.off('message', this.#onMessage)
    if (process.connected) cluster.worker?.disconnect()
  }

  #receive (message: PrimaryMessage | undefined): void {
    switch (message?.type) {
      case 'streammeter:config':
        this.#resolveConfig(message.config)
        break
      case 'streammeter:stop':
        this.#resolveStop()
        break
      case 'streammeter:finish':
        this.#finish?.(message.finalSeal)
        break
    }
  }
}
