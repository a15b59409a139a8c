import { StoreError } from '../errors.ts'

/**
 * The keys of one store. Every key starts with `{<prefix>}`, one Redis Cluster
 * hash tag, so all of them hash to one slot: Cluster refuses a script whose
 * keys span slots, and every write here is a multi-key script. One store is
 * therefore one shard (docs/scaling.md).
 */
export interface RedisKeys {
  /** `{p}:records` — hash uid → record JSON: the live records. */
  readonly records: string
  /** `{p}:pending` — sorted set uid → start time of each sub-threshold live record; `expire` reads it. */
  readonly pending: string
  /** `{p}:qualified` — set of the qualified live uids; a seal takes them. */
  readonly qualified: string
  /** `{p}:by-bytes` — sorted set uid → bytes of each live record; `summary().top` reads it. */
  readonly byBytes: string
  /** `{p}:stage` — hash uid → record JSON: what a seal took and has not committed yet. */
  readonly stage: string
  /** `{p}:stage-meta` — hash: `token`, `sealed_at`, `prev_next_seal_at`, `prev_scheduled_at` of the staged seal. */
  readonly stageMeta: string
  /** `{p}:meta` — hash: `next_seal_at`, `scheduled_at` (when it was set); totals of the live records `q_uids`, `q_bytes`, `p_uids`, `p_bytes`; `outbox_bytes`. */
  readonly meta: string
  /** `{p}:counters` — hash of exactly the StoreCounters fields. */
  readonly counters: string
  /** `{p}:seq` — INCR source of outbox seqs; never reset, so a seq is never reused. */
  readonly seq: string
  /** `{p}:outbox` — list of pending report ids in delivery order (src/store/redis-outbox-scripts.ts). */
  readonly outbox: string
  /** `{p}:parked` — sorted set of parked report ids by seq; their bytes are `parked_bytes` of `{p}:meta`. */
  readonly parked: string
  /** `{p}:retried` — set of the pending reports put back at the front of `{p}:outbox` by hand. */
  readonly retried: string
  /** `{p}:report:<report id>` — hash: one outbox entry. */
  readonly reportPrefix: string
  /**
   * `{p}:flushed:<batch id>:<chunk index>` — the result of one chunk of a flush, so that a
   * retried batch skips the chunks Redis already applied (src/store/redis-flusher.ts).
   */
  readonly flushedPrefix: string
  /**
   * `{p}:log-cursor:<log key>` — hash: `position` committed for that log, and
   * `pending_id`, `pending_to` of a batch with a cursor sent and not committed
   * yet (src/store/redis-flusher.ts).
   */
  readonly logCursorPrefix: string
  /** `{p}:lease` (holder, with a TTL) and `{p}:fence` (a counter bumped on every new holder): the reporter lease. */
  readonly lease: string
  readonly fence: string
  /**
   * `{p}:grants:<uid>` — hash `<network> <agent> <directory>` (each {@link keyPart}) → grant JSON:
   * one uid's grants, as `putGrant` plans over them (src/store/redis-access-scripts.ts).
   */
  readonly grantsPrefix: string
  /**
   * `{p}:grants-in:<network>` — sorted set of grant JSON by `expiresAt`: every uid's grants in
   * that network, so that `grantsIn` is one range read and expired ones go by score.
   */
  readonly grantsInPrefix: string
  /** `{p}:session:<id>` — string: one session's JSON, expiring with it. */
  readonly sessionPrefix: string
  /** `{p}:sessions-of:<uid>` — sorted set of a uid's session ids by when their keys expire (Redis time): what `revoke` drops. */
  readonly sessionsOfPrefix: string
  /** `{p}:use:<key>` — INCR counter of one use key (`countUse`). */
  readonly usePrefix: string
  /** `{p}:access-epoch` — INCR: moves whenever access is taken back (a revocation, an eviction, a dropped session). */
  readonly accessEpoch: string
}

/**
 * The keys of the store under `prefix`.
 * @throws {StoreError} for an empty prefix or one holding `{` or `}` (it would break the hash tag)
 */
export function redisKeys (prefix: string): RedisKeys {
  if (prefix === '' || /[{}]/.test(prefix)) {
    throw new StoreError('the redis store prefix must be non-empty and must not contain "{" or "}"')
  }
  const tag = `{${prefix}}`
  return Object.freeze({
    records: `${tag}:records`,
    pending: `${tag}:pending`,
    qualified: `${tag}:qualified`,
    byBytes: `${tag}:by-bytes`,
    stage: `${tag}:stage`,
    stageMeta: `${tag}:stage-meta`,
    meta: `${tag}:meta`,
    counters: `${tag}:counters`,
    seq: `${tag}:seq`,
    outbox: `${tag}:outbox`,
    parked: `${tag}:parked`,
    retried: `${tag}:retried`,
    reportPrefix: `${tag}:report:`,
    flushedPrefix: `${tag}:flushed:`,
    logCursorPrefix: `${tag}:log-cursor:`,
    lease: `${tag}:lease`,
    fence: `${tag}:fence`,
    grantsPrefix: `${tag}:grants:`,
    grantsInPrefix: `${tag}:grants-in:`,
    sessionPrefix: `${tag}:session:`,
    sessionsOfPrefix: `${tag}:sessions-of:`,
    usePrefix: `${tag}:use:`,
    accessEpoch: `${tag}:access-epoch`
  })
}

/** Bytes a {@link keyPart} keeps as they are: ASCII letters, digits and `- . _ ~ / :`. */
const KEPT = /^[A-Za-z0-9\-._~/:]$/

/**
 * A uid, network, session id or use key as the tail of a key name or a hash
 * field: its UTF-8 bytes, each one outside {@link KEPT} as `%XX`. The tail can
 * then hold no space, newline, brace or glob character (`* ? [ ] \`), so
 * SCAN patterns, redis-cli and the Cluster hash tag all see it as plain text,
 * and `<a> <b>` joins of parts stay unambiguous. The scripts build the same
 * names with the Lua twin, `keyPart` in src/store/redis-access-scripts.ts:
 * change both or neither.
 */
export function keyPart (value: string): string {
  let out = ''
  for (const byte of Buffer.from(value, 'utf8')) {
    const c = String.fromCharCode(byte)
    out += KEPT.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return out
}
