import { randomUUID } from 'node:crypto'
import { StoreError } from '../errors.ts'
import { CLOCK_BACK_SLACK_MS, checkRendered, compareRecords } from '../meter/index.ts'
import type { OutboxEntry, RenderedReport, SealRequest, SealResult, UsagePolicy } from '../meter/index.ts'
import { limit, toRecords } from './redis-codec.ts'
import { SEAL_WAIT_MS } from './redis-durability.ts'
import type { RedisDurability } from './redis-durability.ts'
import type { RedisKeys } from './redis-keys.ts'
import type { RedisScriptRunner } from './redis-script-runner.ts'

/**
 * The seals of the redis store, three steps because `render` runs in JS:
 * stage, render, commit; or put the stage back when render or the commit
 * fails (see the class comment of RedisStore in src/store/redis-store.ts;
 * scripts: src/store/redis-seal-scripts.ts).
 */
export class RedisSealer {
  readonly #runner: RedisScriptRunner
  readonly #keys: RedisKeys
  readonly #policy: UsagePolicy
  readonly #durability: RedisDurability

  constructor (runner: RedisScriptRunner, keys: RedisKeys, policy: UsagePolicy, durability: RedisDurability) {
    this.#runner = runner
    this.#keys = keys
    this.#policy = policy
    this.#durability = durability
  }

  /** `UsageStore.seal`. */
  async seal (request: SealRequest): Promise<SealResult> {
    const k = this.#keys
    const token = randomUUID()
    const [status, sealedAt, next, flat] = await this.#runner.script('seal', 'smStage',
      [k.records, k.qualified, k.byBytes, k.meta, k.stage, k.stageMeta],
      [request.now, request.intervalMs, request.force === true ? '1' : '0', token, CLOCK_BACK_SLACK_MS]) as [string, string, string, string[]]
    const nextSealAt = Number(next)
    if (status !== 'staged') return { sealed: status === 'empty', reports: [], nextSealAt }

    const records = toRecords(flat).sort(compareRecords)
    let rendered: RenderedReport[] = []
    try {
      if (records.length > 0) rendered = checkRendered(records, request.render(records, Number(sealedAt)))
    } catch (err) {
      // The caller's error is the one to see; if the undo fails too, the
      // stage stays and the next seal takes it up.
      await this.#unstage(token).catch(() => {})
      throw err
    }
    let reply: unknown[]
    try {
      reply = await this.#runner.script('seal', 'smCommit',
        [k.stage, k.stageMeta, k.outbox, k.seq, k.meta, k.counters, ...rendered.map((r) => k.reportPrefix + r.reportId)],
        [token, ...rendered.flatMap((r) => [r.reportId, r.body, r.uids, r.bytes])]) as unknown[]
    } catch (err) {
      // The commit may have gone through with its reply lost: the undo is
      // fenced by the token, so it only puts back a stage nobody committed.
      await this.#unstage(token).catch(() => {})
      throw err
    }
    if (reply[0] === 'fenced') return { sealed: false, reports: [], nextSealAt }
    if (reply[0] === 'duplicate') {
      await this.#unstage(token)
      throw new StoreError(`report id ${String(reply[1])} is already in the outbox`)
    }
    // Durable before delivery (docs/scaling.md, "Redis settings"). A wait that
    // fails leaves the reports in the outbox unconfirmed: outboxHead()
    // confirms before handing one out.
    if (rendered.length > 0) await this.#durability.confirm(SEAL_WAIT_MS).catch(() => {})
    const createdAt = Number(reply[1])
    const reports = rendered.map((r, i): OutboxEntry => ({
      seq: Number(reply[i + 2]), reportId: r.reportId, createdAt, body: r.body, uids: r.uids, bytes: r.bytes, attempts: 0
    }))
    return { sealed: true, reports, nextSealAt }
  }

  async #unstage (token: string): Promise<void> {
    const k = this.#keys
    await this.#runner.script('seal', 'smUnstage',
      [k.records, k.pending, k.qualified, k.byBytes, k.meta, k.counters, k.stage, k.stageMeta],
      [token, limit(this.#policy.maxIps), limit(this.#policy.maxSessions)])
  }
}
