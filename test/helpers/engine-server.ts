/**
 * `streammeter serve` under either engine (docs/engines.md) in a process of
 * its own, with the nginx engine's files (`ENGINE_DIR`) in a temp dir, and
 * the nginx processes such a server leaves or not behind it.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startCliServer } from './cli-server.ts'
import type { CliServer } from './cli-server.ts'

/** The engines, as `ENGINE` names them. */
export type Engine = 'node' | 'nginx'
export const ENGINES: readonly Engine[] = ['node', 'nginx']

/** Where cleanups go: a test's context, or a suite's own list. */
export interface Cleanup {
  after (fn: () => unknown): void
}

/** A `streammeter serve` process of either engine. */
export interface EngineServer extends CliServer {
  engine: Engine
  /** `ENGINE_DIR` (also set for the node engine, which ignores it). */
  engineDir: string
  port: number
  /** Process groups of the nginx masters seen running for this server (each master leads its own). */
  nginxGroups: Set<number>
}

/**
 * Start `streammeter serve` with `ENGINE=engine` on 127.0.0.1, port 0 unless
 * `env` says otherwise. `engineDir` reuses the directory of an earlier server
 * (a restart); otherwise a new one is made and removed after the test. After
 * the test the process is killed if it still runs, and so is every nginx
 * process of the directory.
 */
export async function startEngineServer (t: Cleanup, engine: Engine, env: Record<string, string>, engineDir?: string): Promise<EngineServer> {
  const dir = engineDir ?? mkdtempSync(join(tmpdir(), `sm-engine-${engine}-`))
  const groups = new Set<number>()
  const running: { cli?: CliServer } = {}
  // Registered before the start, so that a start that fails half-way is
  // cleaned up too: the server first (it would start an nginx again), then
  // the nginx processes of the directory.
  t.after(async () => {
    const { cli } = running
    if (cli !== undefined && cli.child.exitCode === null && cli.child.signalCode === null) {
      cli.child.kill('SIGKILL')
      await cli.exited
    }
    for (const pid of nginxProcesses(dir, groups)) try { process.kill(pid, 'SIGKILL') } catch {}
    if (engineDir === undefined) rmSync(dir, { recursive: true, force: true })
  })
  // The nginx the tests check for (own-nginx.ts) is the one the server runs.
  const nginxBin: Record<string, string> = process.env.NGINX_BIN === undefined ? {} : { NGINX_BIN: process.env.NGINX_BIN }
  const cli = await startCliServer({ ENGINE: engine, ENGINE_DIR: dir, ...nginxBin, ...env })
  running.cli = cli
  const server: EngineServer = { ...cli, engine, engineDir: dir, port: Number(new URL(cli.url).port), nginxGroups: groups }
  if (engine === 'nginx') {
    const masters = nginxMasters(dir)
    if (masters.length === 0) throw new Error(`the nginx engine started no nginx in ${dir}:\n${cli.output()}`)
    for (const pid of masters) groups.add(pid)
  }
  return server
}

/** The pids of the running nginx masters started with prefix `dir` (as `pgrep -f <dir>` finds them). */
export function nginxMasters (dir: string): number[] {
  return processes().filter((p) => isMasterOf(p.cmdline, dir)).map((p) => p.pid)
}

/**
 * The nginx processes of `dir` still running: its masters (their command
 * line names the prefix, as `pgrep -f <dir>` finds them) and every nginx
 * process in their process groups or in `groups` (a master's workers outlive
 * it after a kill -9).
 */
export function nginxProcesses (dir: string, groups: Iterable<number> = []): number[] {
  const all = processes()
  const leaders = new Set(groups)
  for (const p of all) if (isMasterOf(p.cmdline, dir)) leaders.add(p.pgid)
  return all.filter((p) => p.cmdline.startsWith('nginx:') && (leaders.has(p.pgid) || isMasterOf(p.cmdline, dir))).map((p) => p.pid)
}

function isMasterOf (cmdline: string, dir: string): boolean {
  return cmdline.startsWith('nginx: master process') && cmdline.includes(` -p ${dir} `)
}

interface Proc { pid: number, pgid: number, cmdline: string }

/** Every process: its pid, process group and command line (Linux /proc). */
function processes (): Proc[] {
  const out: Proc[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      // Field 5 of /proc/<pid>/stat, counted after the command's closing parenthesis.
      const pgid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2])
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ')
      out.push({ pid: Number(entry), pgid, cmdline })
    } catch {
      // gone meanwhile
    }
  }
  return out
}
