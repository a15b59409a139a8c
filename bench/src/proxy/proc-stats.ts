import { readFileSync, readdirSync, writeFileSync } from 'node:fs'

/**
 * CPU time and peak memory of the processes under test, read from /proc
 * (Linux only), so that the same numbers are taken the same way for nginx and
 * for Node.
 */

/**
 * /proc/<pid>/stat counts CPU time in USER_HZ ticks, which the kernel fixes
 * at 100 on every architecture Node runs on (whatever CONFIG_HZ is), so
 * there is no need to ask `getconf CLK_TCK`.
 */
const USER_HZ = 100

/** Fields of /proc/<pid>/stat after the `(comm)`, which may itself contain spaces and parentheses. */
function statFields (pid: number): string[] {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  return text.slice(text.lastIndexOf(')') + 2).split(' ')
}

/**
 * `pid` and its direct children (an nginx master and its workers). Found by
 * scanning /proc for the parent PID, since /proc/<pid>/task/<tid>/children
 * needs a kernel option that not every kernel has.
 */
export function processTree (pid: number): number[] {
  const pids = [pid]
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      // Field 4 of stat is the parent PID; index 1 after the comm.
      if (Number(statFields(Number(name))[1]) === pid) pids.push(Number(name))
    } catch {
      // The process exited while we looked.
    }
  }
  return pids
}

/** The parent PID of `pid` (field 4 of its stat). */
export function parentPid (pid: number): number {
  return Number(statFields(pid)[1])
}

/** utime + stime of `pids` (every thread of each), in seconds. */
export function cpuSeconds (pids: readonly number[]): number {
  let ticks = 0
  for (const pid of pids) {
    const f = statFields(pid)
    // Fields 14 and 15 of stat (utime, stime): indices 11 and 12 after the comm.
    ticks += Number(f[11]) + Number(f[12])
  }
  return ticks / USER_HZ
}

/** Reset the peak RSS (VmHWM) of `pids` to their current RSS (proc(5): clear_refs, value 5). */
export function resetPeakRss (pids: readonly number[]): void {
  for (const pid of pids) writeFileSync(`/proc/${pid}/clear_refs`, '5')
}

/** Sum of VmHWM of `pids`, in bytes. */
export function peakRssBytes (pids: readonly number[]): number {
  let kib = 0
  for (const pid of pids) {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    if (m === null) throw new Error(`no VmHWM in /proc/${pid}/status`)
    kib += Number(m[1])
  }
  return kib * 1024
}

/** The CPUs `pid` may run on, as the kernel lists them (`0`, `0-1`, …). */
export function cpusAllowed (pid: number): string {
  const m = /^Cpus_allowed_list:\s+(\S+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m?.[1] ?? 'unknown'
}

/** Time one CPU spent, in seconds, from /proc/stat. */
export interface CoreTimes {
  /** user + nice + system: running processes, ours or not. */
  busy: number
  /**
   * irq + softirq: interrupt work, much of it the loopback TCP traffic of the
   * run itself, which the kernel charges to no process (so neither to the
   * target's CPU time nor to "other work").
   */
  interrupts: number
  /** Time the hypervisor ran something else while this virtual CPU wanted to run. */
  steal: number
}

/**
 * Busy and stolen time of each CPU. Sampled around every run, so that a run
 * disturbed by other work (on a shared machine) can be told from a slow
 * target: busy time on the target core beyond the target's own CPU time is
 * someone else's.
 */
export function coreTimes (): CoreTimes[] {
  const out: CoreTimes[] = []
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^cpu(\d+) (.*)$/.exec(line)
    if (m === null) continue
    // user nice system idle iowait irq softirq steal …, in USER_HZ ticks.
    const f = (m[2] as string).trim().split(/\s+/).map(Number)
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f
    out[Number(m[1])] = { busy: (user + nice + system) / USER_HZ, interrupts: (irq + softirq) / USER_HZ, steal: steal / USER_HZ }
  }
  return out
}
