import { closeSync, fstatSync, openSync, readSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { isOurNginx, readPid } from '../../../src/server/nginx/nginx-supervisor.ts'
import { httpGet } from './net.ts'
import { parentPid, processTree } from './proc-stats.ts'

/**
 * The nginx engine's side of the benchmark: its processes (streammeter, and
 * the nginx it starts as its child in a process group of its own), and
 * nginx's own account of what it sent, the access log in `ENGINE_DIR`
 * (docs/engines.md), against which streammeter's metering is checked.
 */

/** Bytes read from the log at a time. */
const CHUNK = 1024 * 1024
/** Between two looks at the log and at streammeter while waiting for its reader. */
const POLL_MS = 300

/** The fields of an access-log line the benchmark uses (src/server/nginx/access-log-line.ts, `ACCESS_LOG_FORMAT`). */
interface LogLine {
  uid: string
  bytes: number
  status: number
  method: string
}

/**
 * What nginx logged, read incrementally from the access log: per uid, the
 * sum of `$body_bytes_sent` over its lines (every line with a uid, whatever
 * its status: nginx's own count), and the bytes of the lines streammeter
 * meters (a `GET` answered 200 or 206 with a uid; the reader's rule), which
 * its `bytes_recorded` must reach once it has read the log to its end.
 */
export class AccessLogTally {
  readonly path: string
  /** Bytes per uid, over every line with a uid. */
  readonly perUid = new Map<string, number>()
  /** Lines per status. */
  readonly statuses = new Map<number, number>()
  /** Bytes of the lines streammeter meters. */
  metered = 0
  lines = 0
  /** Lines that are no access-log line (none expected). */
  badLines = 0
  #position = 0
  #carry = Buffer.alloc(0)

  constructor (path: string) {
    this.path = path
  }

  /**
   * Read the lines nginx wrote since the last call; true when the file grew.
   * @throws when the file got shorter (rotated or truncated: the tally cannot follow it)
   */
  update (): boolean {
    let fd: number
    try {
      fd = openSync(this.path, 'r')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
      throw err
    }
    try {
      const size = fstatSync(fd).size
      const from = this.#position + this.#carry.length
      if (size < from) throw new Error(`${this.path} shrank from ${from} to ${size} bytes (rotated?): the benchmark reads it as one file`)
      if (size === from) return false
      const buffer = Buffer.allocUnsafe(CHUNK)
      let at = from
      while (at < size) {
        const n = readSync(fd, buffer, 0, Math.min(CHUNK, size - at), at)
        if (n === 0) break
        at += n
        const data = this.#carry.length === 0 ? buffer.subarray(0, n) : Buffer.concat([this.#carry, buffer.subarray(0, n)])
        const end = data.lastIndexOf(0x0a)
        if (end === -1) {
          this.#carry = Buffer.from(data)
          continue
        }
        for (const text of data.toString('utf8', 0, end).split('\n')) if (text !== '') this.#add(text)
        this.#position += end + 1
        this.#carry = Buffer.from(data.subarray(end + 1))
      }
      return true
    } finally {
      closeSync(fd)
    }
  }

  /** Sum of bytes over the uids `which` selects. */
  bytesOf (which: (uid: string) => boolean): number {
    let n = 0
    for (const [uid, bytes] of this.perUid) if (which(uid)) n += bytes
    return n
  }

  #add (text: string): void {
    const line = parseLine(text)
    if (line === undefined || typeof line.bytes !== 'number' || !Number.isInteger(line.bytes) || typeof line.uid !== 'string') {
      this.badLines++
      return
    }
    this.lines++
    this.statuses.set(line.status, (this.statuses.get(line.status) ?? 0) + 1)
    if (line.uid === '') return
    this.perUid.set(line.uid, (this.perUid.get(line.uid) ?? 0) + line.bytes)
    if (line.method === 'GET' && (line.status === 200 || line.status === 206) && line.bytes > 0) this.metered += line.bytes
  }
}

/**
 * The fields the benchmark uses, read on its own rather than with
 * streammeter's reader, which it checks: a line of the tab-separated
 * format (`3`, `$msec`, uid, bytes, status, method, …, or `2` without the
 * last field; the benchmark's uids need no unescaping), or a JSON object
 * (earlier versions).
 */
function parseLine (text: string): LogLine | undefined {
  if (text.startsWith('{')) {
    try {
      return JSON.parse(text) as LogLine
    } catch {
      return undefined
    }
  }
  const f = text.split('\t')
  if (!(f[0] === '3' && f.length === 15) && !(f[0] === '2' && f.length === 14)) return undefined
  return { uid: f[2] as string, bytes: Number(f[3]), status: Number(f[4]), method: f[5] as string }
}

/** `statistics.bytes_recorded` of streammeter's `/traffic` (from loopback: no token while ADMIN_TOKEN is unset). */
async function bytesRecorded (baseUrl: string): Promise<number> {
  const { status, body } = await httpGet(`${baseUrl}/traffic?top=0`, 10_000)
  if (status !== 200) throw new Error(`GET /traffic answered ${status}`)
  const n = (JSON.parse(body) as { statistics?: { bytes_recorded?: unknown } }).statistics?.bytes_recorded
  if (typeof n !== 'number') throw new Error('/traffic has no statistics.bytes_recorded')
  return n
}

/**
 * Wait until nginx has stopped writing lines and streammeter has recorded
 * every byte of them it meters: its log reader runs at each collector flush
 * (every second by default), so this takes up to a flush interval after the
 * last line. Returns streammeter's `bytes_recorded`, equal to the tally's
 * `metered`.
 * @throws when it does not happen within `timeoutMs`
 */
export async function readerCaughtUp (baseUrl: string, tally: AccessLogTally, timeoutMs = 60_000): Promise<number> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    await sleep(POLL_MS)
    const grew = tally.update()
    if (!grew) {
      const recorded = await bytesRecorded(baseUrl)
      if (recorded === tally.metered) return recorded
      if (Date.now() > deadline) {
        throw new Error(`streammeter's log reader did not catch up within ${timeoutMs} ms: it recorded ${recorded} bytes, the lines it meters hold ${tally.metered}`)
      }
    } else if (Date.now() > deadline) {
      throw new Error(`nginx kept writing its access log for ${timeoutMs} ms after the load`)
    }
  }
}

/**
 * The nginx engine's processes now: streammeter (`smPid`), its nginx master
 * (from the pid file in `dir`, which must be streammeter's child) and the
 * master's workers. Looked up afresh for every run: the master replaces a
 * worker that dies, and streammeter restarts a master that dies.
 * @throws when the pid file names no child of streammeter
 */
export function enginePids (smPid: number, dir: string): number[] {
  const master = readPid(join(dir, 'nginx.pid'))
  if (master === undefined) throw new Error(`no nginx.pid in ${dir}`)
  let parent: number | undefined
  try {
    parent = parentPid(master)
  } catch {}
  if (parent !== smPid) throw new Error(`${dir}/nginx.pid names ${master}, which is not a child of streammeter (${smPid})`)
  return [smPid, ...processTree(master)]
}

/**
 * Stop an nginx the engine in `dir` left running (its streammeter was killed
 * before it could stop it): its master, found by the pid file and checked
 * by its command line, and its process group (the workers). A no-op when
 * streammeter stopped it, as it does on SIGTERM.
 */
export async function stopLeftoverNginx (dir: string): Promise<void> {
  const pid = readPid(join(dir, 'nginx.pid'))
  if (pid === undefined || !isOurNginx(pid, dir)) return
  for (const signal of ['SIGQUIT', 'SIGKILL'] as const) {
    try {
      process.kill(-pid, signal)
    } catch {
      return
    }
    for (let i = 0; i < 30 && isOurNginx(pid, dir); i++) await sleep(100)
    if (!isOurNginx(pid, dir)) return
  }
}
