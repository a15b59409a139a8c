import { spawn, spawnSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { existsSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs'
import { EngineError } from '../../errors.ts'
import type { MeterLogger } from '../../meter/index.ts'
import { NJS_MODULE_PATH } from './nginx-config.ts'

/** What to install when something is missing (Debian, the packages `.ci/run` installs). */
const PACKAGES = 'apt-get install nginx libnginx-mod-http-js'

/**
 * Whether `bin` runs and the js module is there.
 * @throws {EngineError} naming the Debian packages to install
 */
export function checkNginx (bin: string, njsModule = NJS_MODULE_PATH): void {
  const run = spawnSync(bin, ['-v'], { encoding: 'utf8' })
  if (run.error !== undefined || run.status !== 0) {
    throw new EngineError(`nginx is not installed or does not run (${bin}): ${PACKAGES}`, { missing: true })
  }
  if (!existsSync(njsModule)) {
    throw new EngineError(`nginx's js module is not installed (${njsModule}): ${PACKAGES}`, { missing: true })
  }
}

/** Options of {@link NginxSupervisor}. */
export interface NginxSupervisorOptions {
  /** `NGINX_BIN`. @default 'nginx' */
  bin?: string | undefined
  /** nginx's prefix (`ENGINE_DIR`): its pid file is `nginx.pid` there, as the rendered configuration says. */
  dir: string
  /** The rendered configuration (nginx-config.ts). */
  conf: string
  logger: MeterLogger
  /** Ms before the first restart after a crash; doubles up to 5 s while nginx keeps failing. @default 200 */
  restartDelay?: number | undefined
  /**
   * Whether nginx answers (a request to its port): `start()` resolves once it
   * does. nginx retries a busy port for 2.5 s before it gives up, so without
   * a probe a port held by someone else is noticed only by the restarts.
   */
  ready?: (() => Promise<boolean>) | undefined
  /**
   * Unix sockets nginx listens on, removed before each start: an nginx
   * killed with -9 leaves its socket files behind, and nginx will not bind
   * over one.
   */
  unixSockets?: readonly string[] | undefined
}

/** Life of the supervised nginx; changed in one place. */
export type SupervisorState = 'idle' | 'running' | 'restarting' | 'stopping' | 'stopped'

/**
 * Runs nginx as a child (docs/engines.md): starts it in the foreground
 * (`daemon off`), restarts it when it dies, reloads it (`HUP`) after its
 * configuration was checked (`nginx -t`), reopens its logs (`USR1`) and
 * stops it gracefully (`QUIT`: it stops accepting and finishes the
 * responses in flight, logging each). An nginx left running by a previous
 * streammeter that died (its pid file names a live nginx) is stopped the
 * same graceful way before this one starts: its listening sockets close at
 * once, and it goes on writing the lines of the responses it finishes.
 */
export class NginxSupervisor {
  readonly #bin: string
  readonly #dir: string
  readonly #conf: string
  readonly #logger: MeterLogger
  readonly #baseDelay: number
  readonly #ready: (() => Promise<boolean>) | undefined
  readonly #unixSockets: readonly string[]
  #child: ChildProcess | undefined
  #state: SupervisorState = 'idle'
  #restarts = 0
  #delay: number
  #timer: NodeJS.Timeout | undefined
  #exited: Promise<void> = Promise.resolve()

  constructor (options: NginxSupervisorOptions) {
    this.#bin = options.bin ?? 'nginx'
    this.#dir = options.dir
    this.#conf = options.conf
    this.#logger = options.logger
    this.#baseDelay = options.restartDelay ?? 200
    this.#ready = options.ready
    this.#unixSockets = options.unixSockets ?? []
    this.#delay = this.#baseDelay
  }

  get state (): SupervisorState {
    return this.#state
  }

  /** Times nginx was started again after it died. */
  get restarts (): number {
    return this.#restarts
  }

  /** The nginx master's pid, while one runs. */
  get pid (): number | undefined {
    const child = this.#child
    return child !== undefined && child.exitCode === null && child.signalCode === null ? child.pid : undefined
  }

  /**
   * Check the configuration, stop a stale nginx of a previous run, start.
   * @throws {EngineError} when the configuration is refused or nginx exits at once
   */
  async start (): Promise<void> {
    this.test()
    await this.#stopStale()
    this.#spawn()
    this.#setState('running')
    // nginx that cannot load its module exits within moments; one that
    // cannot bind after 2.5 s of retries.
    let exited = false
    this.#exited.then(() => { exited = true }, () => {})
    const deadline = Date.now() + 5000
    for (;;) {
      await sleep(this.#ready === undefined ? 300 : 50, true)
      if (exited) break
      if (this.#ready === undefined || await this.#ready()) return
      if (Date.now() > deadline) break
    }
    const line = this.#errorLine()
    await this.stop(1000)
    throw new EngineError(`nginx did not start: ${exited ? 'it exited' : 'it does not answer'}${line === '' ? '' : ` (${line})`}`)
  }

  /**
   * `nginx -t`: whether the configuration file loads.
   * @throws {EngineError} with nginx's first error line
   */
  test (): void {
    const run = spawnSync(this.#bin, this.#args('-t'), { encoding: 'utf8' })
    if (run.status !== 0) {
      const line = (run.stderr ?? '').split('\n').find((l) => l.includes('[emerg]')) ?? (run.error?.message ?? 'nginx -t failed')
      throw new EngineError(`the nginx configuration is refused: ${line.replace(/^.*\[emerg\] /, '')}`)
    }
  }

  /** Check the (rewritten) configuration, then tell nginx to load it; the old one keeps serving if it is refused. */
  reload (): void {
    this.test()
    this.#signal('SIGHUP')
  }

  /**
   * Tell nginx to reopen its log files (after the access log was renamed).
   * Only once nginx has written its pid file, which it does after setting
   * up its signal handlers: a USR1 before then would kill it. A reopen
   * skipped so is asked for again by the log reader, which calls this while
   * a rotated file is still written to.
   */
  reopenLogs (): void {
    const pid = this.pid
    if (pid !== undefined && readPid(`${this.#dir}/nginx.pid`) === pid) this.#signal('SIGUSR1')
  }

  /**
   * Graceful stop: `QUIT`, then `TERM` if nginx is still running after
   * `grace` ms (the responses still in flight are cut). Idempotent.
   */
  async stop (grace = 10_000): Promise<void> {
    if (this.#state === 'stopped' || this.#state === 'idle') return
    this.#setState('stopping')
    clearTimeout(this.#timer)
    this.#signal('SIGQUIT')
    if (!await Promise.race([this.#exited.then(() => true), sleep(grace).then(() => false)])) {
      this.#logger.warn({ grace }, 'nginx did not finish within the grace: terminating it')
      this.#signal('SIGTERM')
      await this.#exited
    }
    this.#setState('stopped')
  }

  #setState (next: SupervisorState): void {
    this.#state = next
  }

  #args (...extra: string[]): string[] {
    return ['-p', this.#dir, '-c', this.#conf, '-e', `${this.#dir}/error.log`, ...extra]
  }

  #spawn (): void {
    for (const socket of this.#unixSockets) rmSync(socket, { force: true })
    // A process group of its own: when the master dies (kill -9), its
    // workers live on, still accepting on the port; the group is how they
    // are found and told to finish.
    const child = spawn(this.#bin, this.#args(), { stdio: 'ignore', detached: true })
    this.#child = child
    this.#exited = new Promise((resolve) => {
      let ended = false
      const end = (code: number | null, signal: NodeJS.Signals | null, err?: Error): void => {
        if (ended) return
        ended = true
        // Workers left behind stop accepting, finish their responses (each
        // logged) and exit, freeing the port for the next master.
        if (child.pid !== undefined) try { process.kill(-child.pid, 'SIGQUIT') } catch {}
        resolve()
        this.#onExit(code, signal, err)
      }
      child.once('exit', (code, signal) => { end(code, signal) })
      // A spawn that fails (EAGAIN under memory pressure, the binary gone
      // during an upgrade) is an exit like any other: restarted, not fatal.
      child.once('error', (err) => { end(null, null, err) })
    })
  }

  #onExit (code: number | null, signal: NodeJS.Signals | null, err?: Error): void {
    if (this.#state !== 'running') return
    this.#setState('restarting')
    this.#logger.error({ code, signal, spawnError: err?.message, restartIn: this.#delay, error: this.#errorLine() }, 'nginx died: starting it again')
    this.#timer = setTimeout(() => {
      if (this.#state !== 'restarting') return
      this.#restarts++
      this.#spawn()
      this.#setState('running')
      // Reset the backoff once it has stayed up a while.
      const started = this.#child
      setTimeout(() => { if (this.#child === started && this.pid !== undefined) this.#delay = this.#baseDelay }, 5000).unref()
    }, this.#delay)
    this.#delay = Math.min(5000, this.#delay * 2)
  }

  #signal (signal: NodeJS.Signals): void {
    if (this.pid !== undefined) this.#child?.kill(signal)
  }

  /**
   * An nginx of a previous run of ours (its pid file in our prefix, its
   * command line naming our prefix) still running, or only its workers (its
   * master was killed with streammeter): QUIT its process group, and wait
   * for its listeners to close.
   */
  async #stopStale (): Promise<void> {
    const pid = readPid(`${this.#dir}/nginx.pid`)
    if (pid === undefined) return
    const master = isOurNginx(pid, this.#dir)
    if (!master && !groupListens(pid)) return
    this.#logger.warn({ pid, master }, 'an nginx of a previous run still runs: stopping it gracefully before starting ours')
    try {
      // The group: a previous streammeter started it as ours is started.
      process.kill(-pid, 'SIGQUIT')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw new EngineError(`cannot stop the nginx of a previous run (pid ${pid})`, { cause: err })
    }
    // Its listening sockets close at once; it may take long to finish its
    // responses, so only its listeners are waited for, briefly.
    // Its workers hold the listening sockets too: the whole process group
    // (a previous streammeter started it as ours is started) is watched.
    for (let i = 0; i < 50 && groupListens(pid); i++) await sleep(100, true)
  }

  #errorLine (): string {
    try {
      const lines = readFileSync(`${this.#dir}/error.log`, 'utf8').trim().split('\n')
      return lines.findLast((l) => l.includes('[emerg]') || l.includes('[alert]')) ?? lines.at(-1) ?? ''
    } catch {
      return ''
    }
  }
}

/** The pid a pid file names, or undefined (no file, or no pid in it). */
export function readPid (file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim())
    return Number.isSafeInteger(pid) && pid > 1 ? pid : undefined
  } catch {
    return undefined
  }
}

/** Whether `pid` is an nginx master started with our prefix (not a pid reused by something else, nor another nginx). */
export function isOurNginx (pid: number, dir: string): boolean {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ')
    return cmdline.startsWith('nginx: master process') && cmdline.includes(` -p ${dir} `)
  } catch {
    return false
  }
}

/** Whether some process of the group `pgid` still holds a listening TCP socket. */
function groupListens (pgid: number): boolean {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      // Field 5 of /proc/<pid>/stat, counted after the command's closing parenthesis.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]) === pgid && listens(Number(entry))) return true
    } catch {
      // gone meanwhile
    }
  }
  return false
}

/** Whether the process still holds a listening TCP socket (its inodes in /proc/net/tcp*, state 0A). */
function listens (pid: number): boolean {
  try {
    const inodes = new Set<string>()
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      const target = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))
      if (target !== null) inodes.add(target[1] ?? '')
    }
    for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
      for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
        const cols = line.trim().split(/\s+/)
        if (cols[3] === '0A' && inodes.has(cols[9] ?? '')) return true
      }
    }
    return false
  } catch {
    return false
  }
}

/**
 * A pause. Unreferenced unless `hold`: a race against nginx's exit must not
 * keep the process alive, but a wait with nothing else pending (before
 * nginx is spawned) must.
 */
function sleep (ms: number, hold = false): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms)
    if (!hold) timer.unref()
  })
}
