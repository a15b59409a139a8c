import type { Cluster, Redis } from 'ioredis'
import { StoreError } from '../errors.ts'
import { checkSplit } from '../meter/index.ts'
import type { FailureDetail, OutboxEntry, OutboxItem, OutboxStats, RenderedReport } from '../meter/index.ts'
import { toEntry } from './redis-codec.ts'
import { GATE_WAIT_MS } from './redis-durability.ts'
import type { RedisDurability } from './redis-durability.ts'
import type { RedisKeys } from './redis-keys.ts'
import { parseItem } from './redis-outbox-scripts.ts'
import type { RedisScriptRunner } from './redis-script-runner.ts'

/**
 * The outbox of the redis store after a seal: the delivery gate,
 * acknowledgement, failures, parking, splits, putting back, dropping and the
 * reads that list it (docs/report-format.md, "Refused reports"). Each write
 * is one script of src/store/redis-outbox-scripts.ts.
 */
export class RedisOutbox {
  readonly #client: Redis | Cluster
  readonly #runner: RedisScriptRunner
  readonly #keys: RedisKeys
  readonly #durability: RedisDurability

  constructor (client: Redis | Cluster, runner: RedisScriptRunner, keys: RedisKeys, durability: RedisDurability) {
    this.#client = client
    this.#runner = runner
    this.#keys = keys
    this.#durability = durability
  }

  /** The next report to deliver, handed out once its seal is durable (`UsageStore.outboxHead`). */
  async head (): Promise<OutboxEntry | undefined> {
    const [head] = await this.#range('outboxHead', '0')
    // The delivery gate: a report goes out only once its seal is durable.
    if (head !== undefined) await this.#runner.run('outboxHead', () => this.#durability.gate(head.reportId, GATE_WAIT_MS))
    return head
  }

  /** `UsageStore.outboxAck`. */
  async ack (reportId: string, now: number): Promise<boolean> {
    const k = this.#keys
    const reply = await this.#runner.script('outboxAck', 'smAck', [k.outbox, k.reportPrefix + reportId, k.meta, k.counters, k.parked, k.retried], [reportId, now])
    return reply === 1
  }

  /** `UsageStore.outboxFail`. */
  async fail (reportId: string, error: string, now: number, detail: FailureDetail): Promise<void> {
    const k = this.#keys
    await this.#runner.script('outboxFail', 'smFail', [k.reportPrefix + reportId, k.counters], [error, now, detail.status ?? '', detail.rejected === true ? '1' : '0'])
  }

  /** `UsageStore.outboxPark`. */
  async park (reportId: string, error: string, now: number, detail: FailureDetail): Promise<boolean> {
    const k = this.#keys
    const reply = await this.#runner.script('outboxPark', 'smPark', [k.outbox, k.parked, k.retried, k.reportPrefix + reportId, k.meta, k.counters],
      [reportId, error, now, detail.status ?? ''])
    return reply === 1
  }

  /**
   * `UsageStore.outboxSplit`: checks the parts against the report (whose uids
   * and bytes never change), then replaces it in one script.
   */
  async split (reportId: string, parts: readonly RenderedReport[], error: string, now: number, detail: FailureDetail): Promise<boolean> {
    const k = this.#keys
    const [uids, bytes, parked] = await this.#runner.run('outboxSplit', () => this.#client.hmget(k.reportPrefix + reportId, 'uids', 'bytes', 'parked_at'))
    if (uids === null || parked !== null) return false
    checkSplit({ reportId, uids: Number(uids), bytes: Number(bytes) }, parts)
    const reply = await this.#runner.script('outboxSplit', 'smSplit',
      [k.outbox, k.seq, k.retried, k.reportPrefix + reportId, k.meta, k.counters, ...parts.map((p) => k.reportPrefix + p.reportId)],
      [reportId, error, now, detail.status ?? '', ...parts.flatMap((p) => [p.reportId, p.body, p.uids, p.bytes])]) as string[]
    if (reply[0] === 'duplicate') throw new StoreError(`report id ${String(reply[1])} is already in the outbox`)
    return reply[0] === 'split'
  }

  /** `UsageStore.outboxRetry`. */
  async retry (target: string | { all: true }): Promise<string[]> {
    // '' tells the script "all": an empty id names no report.
    if (target === '') return []
    const k = this.#keys
    return await this.#runner.script('outboxRetry', 'smRetry', [k.outbox, k.parked, k.retried, k.meta],
      [k.reportPrefix, typeof target === 'string' ? target : '']) as string[]
  }

  /** `UsageStore.outboxDrop`. */
  async drop (reportId: string, force: boolean): Promise<OutboxItem | 'not-parked' | 'unknown'> {
    const k = this.#keys
    const reply = await this.#runner.script('outboxDrop', 'smDrop', [k.outbox, k.parked, k.retried, k.reportPrefix + reportId, k.meta, k.counters],
      [reportId, force ? '1' : '0']) as Array<string | number | null>
    if (reply[0] === 'dropped') return parseItem(reply.slice(1))
    return reply[0] === 'not-parked' ? 'not-parked' : 'unknown'
  }

  /** `UsageStore.outboxStats`. */
  async stats (): Promise<OutboxStats> {
    const k = this.#keys
    const [pending, bytes, oldest, parked, parkedBytes] = await this.#runner.script('outboxStats', 'smOutboxStats', [k.outbox, k.meta, k.parked, k.retried],
      [k.reportPrefix]) as [number, string, string, number, string]
    return {
      pending: Number(pending),
      pendingBytes: Number(bytes),
      oldestCreatedAt: oldest === '' ? undefined : Number(oldest),
      parked: Number(parked),
      parkedBytes: Number(parkedBytes)
    }
  }

  /** `UsageStore.outboxList`. */
  async list (): Promise<OutboxItem[]> {
    const k = this.#keys
    const reply = await this.#runner.script('outboxList', 'smOutboxList', [k.outbox, k.parked], [k.reportPrefix]) as Array<Array<string | number | null>>
    return reply.map(parseItem)
  }

  /** Pending reports in delivery order, then parked ones by seq. */
  async all (): Promise<OutboxEntry[]> {
    const k = this.#keys
    const [pending, parked] = await this.#runner.script('outbox', 'smOutboxAll', [k.outbox, k.parked], [k.reportPrefix]) as [string[][], string[][]]
    return [...pending, ...parked].map(toEntry)
  }

  async #range (operation: string, last: '0'): Promise<OutboxEntry[]> {
    const reply = await this.#runner.script(operation, 'smOutbox', [this.#keys.outbox], [this.#keys.reportPrefix, last]) as string[][]
    return reply.map(toEntry)
  }
}
