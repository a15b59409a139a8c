import { randomUUID } from 'node:crypto'
import type { ChainableCommander, Cluster, Redis } from 'ioredis'
import { StoreError } from '../errors.ts'
import type { FlushResult, LogCursor, UsageDelta, UsagePolicy } from '../meter/index.ts'
import { limit, toDiscarded } from './redis-codec.ts'
import { FLUSH_MARKER_TTL_MS } from './redis-flush-scripts.ts'
import type { RedisKeys } from './redis-keys.ts'
import { messageOf, withoutArguments } from './redis-script-runner.ts'
import type { RedisScriptRunner } from './redis-script-runner.ts'
import type { ScriptName } from './redis-scripts.ts'

/** A script on a pipeline: queues the command, resolves nothing itself (exec() does). */
type QueueScript = (numKeys: number, ...args: Array<string | number>) => unknown

/**
 * The flushes of the redis store: a batch in chunks of `chunkUids` deltas,
 * one script each, all in one pipeline, each chunk applied at most once
 * thanks to its marker (see the class comment of RedisStore in
 * src/store/redis-store.ts). Remembers the last batch whose every chunk
 * answered, so that the next batch deletes its markers.
 */
export class RedisFlusher {
  readonly #client: Redis | Cluster
  readonly #runner: RedisScriptRunner
  readonly #keys: RedisKeys
  readonly #policy: UsagePolicy
  readonly #chunkUids: number
  /**
   * The last batch whose every chunk answered: nothing retries it, so the next
   * flush of another batch deletes its markers. A batch that failed part-way
   * is never recorded here: its retry needs them.
   */
  #lastBatch: { id: string, markers: string[] } | undefined

  /** `chunkUids`: deltas per script, a positive integer (`RedisStoreOptions.flushChunkUids`). */
  constructor (client: Redis | Cluster, runner: RedisScriptRunner, keys: RedisKeys, policy: UsagePolicy, chunkUids: number) {
    this.#client = client
    this.#runner = runner
    this.#keys = keys
    this.#policy = policy
    this.#chunkUids = chunkUids
  }

  /** `RedisStore.flush`. */
  async flush (deltas: readonly UsageDelta[], batchId?: string, cursor?: LogCursor): Promise<FlushResult> {
    this.#runner.check()
    if (deltas.length === 0 && cursor === undefined) return { uids: 0, created: 0, qualified: 0, discarded: [] }
    const k = this.#keys
    const p = this.#policy
    const id = batchId ?? randomUUID()
    const size = this.#chunkUids
    const chunks = Math.ceil(deltas.length / size)
    // A repeat of the last batch (same id) must keep its markers.
    const previous = this.#lastBatch !== undefined && this.#lastBatch.id !== id ? this.#lastBatch.markers : []
    const pipeline = this.#client.pipeline() as unknown as Record<ScriptName, QueueScript>
    const cursorKey = cursor === undefined ? undefined : `${k.logCursorPrefix}${cursor.key}`
    if (cursor !== undefined) pipeline.smCursorBegin(1, cursorKey as string, id, cursor.position)
    const markers: string[] = []
    for (let c = 0; c < chunks; c++) {
      const marker = `${k.flushedPrefix}${id}:${c}`
      markers.push(marker)
      const keys = [k.records, k.pending, k.qualified, k.byBytes, k.meta, k.counters, marker]
      // The previous batch's markers are spread over the chunks, so that no script gets them all.
      for (let j = c; j < previous.length; j += chunks) keys.push(previous[j] as string)
      const chunk = JSON.stringify(deltas.slice(c * size, (c + 1) * size).map((d) => [
        d.uid, d.bytes, d.requests, d.fileTypes, d.ips, d.sessions, d.firstSeen, d.lastSeen
      ]))
      // Queued here, sent by exec(): one write, one round-trip for every chunk.
      pipeline.smFlush(keys.length, ...keys,
        limit(p.minBytes), limit(p.accumulatorTimeoutMs), limit(p.maxIps), limit(p.maxSessions), chunk, FLUSH_MARKER_TTL_MS)
    }
    if (cursor !== undefined) pipeline.smCursorCommit(1 + markers.length, cursorKey as string, ...markers, id, cursor.position)
    const replies = await this.#runner.run('flush', () => (pipeline as unknown as ChainableCommander).exec())
    // null is exec's answer to a MULTI aborted by WATCH; this pipeline has neither.
    if (replies === null) throw new StoreError('redis store flush failed: no reply to the pipeline')
    const result: FlushResult = { uids: deltas.length, created: 0, qualified: 0, discarded: [] }
    // The cursor's begin and commit replies are around the chunks'.
    const chunkReplies = cursor === undefined ? replies : replies.slice(1, -1)
    for (const framing of cursor === undefined ? [] : [replies[0], replies.at(-1)]) {
      const err = framing?.[0]
      if (err != null) throw new StoreError(`redis store flush failed: ${messageOf(err)}`, { cause: withoutArguments(err) })
    }
    for (const [c, [err, reply]] of chunkReplies.entries()) {
      if (err !== null) {
        const where = chunks > 1 ? ` (chunk ${c + 1} of ${chunks})` : ''
        throw new StoreError(`redis store flush failed: ${messageOf(err)}${where}`, { cause: withoutArguments(err) })
      }
      const part = JSON.parse(String(reply)) as { created: number, qualified: number, discarded: Array<[string, number, number]> }
      result.created += part.created
      result.qualified += part.qualified
      for (const d of toDiscarded(part.discarded)) result.discarded.push(d)
    }
    this.#lastBatch = { id, markers }
    return result
  }
}
