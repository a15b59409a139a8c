import cluster from 'node:cluster'
import type { Worker } from 'node:cluster'
import type { Config } from '../config/index.ts'
import { WORKER_ENV, asWorkerMessage } from './cluster-protocol.ts'
import type { PrimaryMessage, WorkerMessage } from './cluster-protocol.ts'
import type { CliContext } from './context.ts'
import { watchStopSignals } from './stop-signals.ts'

/** First delay before replacing a worker that died, in ms; doubles while replacements keep dying. */
const RESTART_BASE_MS = 200
/** Longest delay between replacements of one worker, in ms. */
const RESTART_CAP_MS = 30_000
/** A worker that listened this long (ms) was healthy: its death starts the backoff afresh. */
const STABLE_MS = 10_000
/**
 * Time a worker may take beyond SHUTDOWN_GRACE to stop, in ms, before it is
 * killed: its server gives the report delivery at least 1 s after the grace,
 * the last worker's final seal another second, and process exit needs a moment.
 */
const STOP_MARGIN_MS = 5000

type Phase = 'starting' | 'running' | 'stopping'

/** One of the N places for a worker; a replacement takes its predecessor's slot and number. */
interface Slot {
  readonly index: number
  worker: Worker | undefined
  listenedAt: number | undefined
  /** The worker has reported its server stopped (graceful stop). */
  closed: boolean
  /** Consecutive deaths within {@link STABLE_MS} of listening (or before it). */
  streak: number
  restartTimer: NodeJS.Timeout | undefined
}

/**
 * The primary of `streammeter serve --workers N` (node:cluster): forks `count`
 * workers that each run the ordinary server with `config` and share its port,
 * prints one `listening on` line once all of them listen, replaces a worker
 * that dies (with a backoff), and on SIGTERM/SIGINT stops them all gracefully.
 * It opens no store and serves nothing itself.
 *
 * A worker that fails to start while the service is starting stops the whole
 * start, as a single process would (exit 2 for a configuration problem, else
 * 1); once the service is up, a replacement that fails is retried with the
 * backoff, except for a configuration problem (exit 2), which no retry fixes.
 * @returns 0 when every worker stopped cleanly, 1 otherwise, 2 when a worker found the configuration unusable
 */
export async function runPrimary (config: Config, count: number, ctx: CliContext): Promise<number> {
  const say = (line: string): void => { ctx.stderr.write(`streammeter serve: ${line}\n`) }
  const slots: Slot[] = Array.from({ length: count }, (_, i) => ({
    index: i + 1, worker: undefined, listenedAt: undefined, closed: false, streak: 0, restartTimer: undefined
  }))
  let phase: Phase = 'starting'
  const setPhase = (next: Phase): void => { phase = next }
  /** The exit status when something failed; 0 while nothing has. */
  let failure = 0
  let killTimer: NodeJS.Timeout | undefined
  let allExited!: () => void
  const exited = new Promise<void>((resolve) => { allExited = resolve })
  const live = (): Slot[] => slots.filter((s) => s.worker !== undefined)
  const killAll = (): void => {
    for (const s of live()) s.worker?.process.kill('SIGKILL')
  }
  // A second signal stops at once, as for a single process: the workers too.
  const signals = watchStopSignals('serve', { ...ctx, exit: (code) => { killAll(); ctx.exit(code) } })

  const send = (slot: Slot, message: PrimaryMessage): void => {
    const worker = slot.worker
    if (worker?.isConnected() === true) worker.send(message)
  }

  const stopAll = (status: number): void => {
    failure = Math.max(failure, status)
    if (phase === 'stopping') return
    setPhase('stopping')
    for (const s of slots) clearTimeout(s.restartTimer)
    for (const s of live()) send(s, { type: 'streammeter:stop' })
    if (live().length === 0) {
      allExited()
      return
    }
    const waitMs = config.shutdownGrace * 1000 + STOP_MARGIN_MS
    killTimer = setTimeout(() => {
      for (const s of live()) say(`worker ${s.index} (pid ${s.worker?.process.pid}) did not stop within ${waitMs / 1000} s; killing it`)
      failure = Math.max(failure, 1)
      killAll()
    }, waitMs)
  }

  const onMessage = (slot: Slot, message: WorkerMessage): void => {
    switch (message.type) {
      case 'streammeter:hello':
        send(slot, { type: 'streammeter:config', config })
        // Forked (or asked for its configuration) after the stop began.
        if (phase === 'stopping') send(slot, { type: 'streammeter:stop' })
        break
      case 'streammeter:listening':
        slot.listenedAt = Date.now()
        if (phase === 'starting' && slots.every((s) => s.listenedAt !== undefined)) {
          setPhase('running')
          say(`listening on ${message.address} (${count} worker processes)`)
        } else if (phase === 'running') {
          say(`worker ${slot.index} is serving again (pid ${slot.worker?.process.pid})`)
        }
        break
      case 'streammeter:closed': {
        slot.closed = true
        // Exactly one worker, the last to close, seals what the others flushed after the reporter's final seal.
        const last = phase === 'stopping' && live().every((s) => s.closed)
        send(slot, { type: 'streammeter:finish', finalSeal: last })
        break
      }
    }
  }

  const onExit = (slot: Slot, worker: Worker, code: number | null, signal: string | null): void => {
    if (slot.worker !== worker) return
    slot.worker = undefined
    const how = `worker ${slot.index} (pid ${worker.process.pid}) ${signal !== null ? `was killed by ${signal}` : `exited with code ${String(code)}`}`
    if (phase === 'stopping') {
      if (code !== 0) {
        say(how)
        failure = Math.max(failure, 1)
      }
      if (live().length === 0) allExited()
      return
    }
    if (code === 2) {
      say(`${how}: a configuration problem; stopping`)
      stopAll(2)
      return
    }
    if (phase === 'starting') {
      say(`${how} while starting; stopping`)
      stopAll(1)
      return
    }
    const lived = slot.listenedAt === undefined ? 0 : Date.now() - slot.listenedAt
    slot.streak = lived >= STABLE_MS ? 1 : slot.streak + 1
    const delay = Math.min(RESTART_CAP_MS, RESTART_BASE_MS * 2 ** Math.min(slot.streak - 1, 20))
    say(`${how}; starting a new one in ${delay / 1000} s`)
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = undefined
      fork(slot)
    }, delay)
  }

  const fork = (slot: Slot): void => {
    slot.listenedAt = undefined
    slot.closed = false
    const worker = cluster.fork({ [WORKER_ENV]: String(slot.index) })
    slot.worker = worker
    worker.on('message', (message: unknown) => {
      const ours = asWorkerMessage(message)
      if (ours !== undefined) onMessage(slot, ours)
    })
    worker.on('exit', (code: number | null, signal: string | null) => onExit(slot, worker, code, signal))
    // A message to a worker that is exiting can fail; its exit is handled above.
    worker.on('error', () => {})
  }

  // The workers run this process's entry script again, as `serve`: their
  // configuration comes from here over IPC, so flags are not repeated and a
  // replacement forked later gets exactly the configuration of the others
  // even if the environment or .env has changed since.
  cluster.setupPrimary({ args: ['serve'], serialization: 'advanced' })
  try {
    for (const slot of slots) fork(slot)
    await Promise.race([signals.requested.then(() => stopAll(0)), exited])
    await exited
  } finally {
    clearTimeout(killTimer)
    signals.dispose()
  }
  if (failure === 0) say('stopped')
  return failure
}
