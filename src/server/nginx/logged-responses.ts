import type { FileType } from '../../meter/index.ts'
import type { LogLine } from './access-log-line.ts'

/**
 * The responses of one read that share a method, status and file type, for
 * figures (not metering): counted together, because a figure updated per
 * line cost a third of the reader's time.
 */
export interface LoggedResponses {
  method: string
  status: number
  /** The decoded path's file type. */
  fileType: FileType
  /** Responses. */
  count: number
  /** Body bytes sent, summed. */
  bytes: number
  /** Seconds nginx took, one per response. */
  seconds: number[]
}

/** One read's {@link LoggedResponses}, by method, status and file type. */
export class ResponseTally {
  readonly #groups = new Map<string, LoggedResponses>()
  /** The group of the last line: most lines are in the same one as the line before (a GET, 200, one file type). */
  #last: LoggedResponses | undefined

  /** Count a line's response. */
  add (line: LogLine, fileType: FileType): void {
    let group = this.#last
    if (group === undefined || group.status !== line.status || group.fileType !== fileType || group.method !== line.method) {
      const key = `${line.method} ${line.status} ${fileType}`
      group = this.#groups.get(key)
      if (group === undefined) {
        group = { method: line.method, status: line.status, fileType, count: 0, bytes: 0, seconds: [] }
        this.#groups.set(key, group)
      }
      this.#last = group
    }
    group.count++
    group.bytes += line.bytes
    group.seconds.push(line.rt)
  }

  /** Hand the groups to `to` (when there are any), then forget them. */
  handOver (to: (responses: Iterable<LoggedResponses>) => void): void {
    if (this.#groups.size === 0) return
    try {
      to(this.#groups.values())
    } finally {
      this.#groups.clear()
      this.#last = undefined
    }
  }
}
