import { StoreError } from '../errors.ts'
import { OUTBOX_SCRIPTS } from './redis-outbox-scripts.ts'

// The key layout and the Lua scripts of the redis store. Each script is one
// atomic step: Redis runs a script to the end before any other command.

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
   * retried batch skips the chunks Redis already applied (src/store/redis-store.ts, `flush`).
   */
  readonly flushedPrefix: string
  /** `{p}:lease` (holder, with a TTL) and `{p}:fence` (a counter bumped on every new holder): the reporter lease. */
  readonly lease: string
  readonly fence: string
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
    lease: `${tag}:lease`,
    fence: `${tag}:fence`
  })
}

/**
 * How long a chunk's marker outlives its last attempt, in ms. @default 86400000
 *
 * Markers of a batch whose every chunk answered are deleted by the store's next
 * flush; the TTL only collects the markers of a store that stopped or died
 * before that, and bounds how long a failed batch may wait for its retry. The
 * collector retries a failed batch every flush tick, so a retry only comes
 * late when this instance cannot reach Redis at all; a retry that reaches
 * Redis renews the markers it finds. A day covers any outage a collector
 * rides out with a batch held in memory, and costs one small string per
 * chunk (at most `TRAFFIC_FLUSH_MAX_UIDS / chunk size`) per stopped process.
 */
export const FLUSH_MARKER_TTL_MS = 24 * 60 * 60_000

// Shared helpers. A record is JSON {b, r, ft, ips, s, st, la, q}. Redis's
// cjson prints numbers with at most 14 significant digits (1.2345678901235e+15)
// and cannot be told more, so cjson.encode is exact only below 1e14: records
// whose bytes (and so every count in them) and times are below that take
// cjson's C encoder; larger ones are written by hand with %.0f, exact up to
// 2^53. cjson encodes an empty array as {}: readers treat {} as []. (Numbers
// handed to redis.call are printed by Redis with %.17g: exact.) Library
// functions are locals: a global lookup costs on every call of a hot loop.
const PRELUDE = `
local call, format, floor, concat = redis.call, string.format, math.floor, table.concat
local quote, cdecode, ipairs, pairs = cjson.encode, cjson.decode, ipairs, pairs
local function num (n)
  if n == floor(n) and n > -1e17 and n < 1e17 then return format('%.0f', n) end
  return format('%.17g', n)
end
local function strings (t)
  local out = {}
  for i, v in ipairs(t) do out[i] = quote(v) end
  return '[' .. concat(out, ',') .. ']'
end
local function byType (t)
  local out = {}
  for name, bytes in pairs(t) do out[#out + 1] = quote(name) .. ':' .. num(bytes) end
  return '{' .. concat(out, ',') .. '}'
end
local function encode (r)
  if r.b < 1e14 and r.st < 1e14 and r.la < 1e14 and r.r < 1e14 then return quote(r) end
  return '{"b":' .. num(r.b) .. ',"r":' .. num(r.r) .. ',"ft":' .. byType(r.ft) .. ',"ips":' .. strings(r.ips) ..
    ',"s":' .. strings(r.s) .. ',"st":' .. num(r.st) .. ',"la":' .. num(r.la) .. ',"q":' .. (r.q and 'true' or 'false') .. '}'
end
local function discard (uid, r)
  return '[' .. quote(uid) .. ',' .. num(r.b) .. ',' .. num(r.st) .. ']'
end
local function head (t, cap)
  if #t <= cap then return t end
  local out = {}
  for i = 1, cap do out[i] = t[i] end
  return out
end
-- unionCapped: a, then the members of b not in a, at most cap in all. The
-- lists are short (cap is maxIps / maxSessions), so a linear search beats a
-- lookup table. a is the caller's own copy and may be extended in place.
local function union (a, b, cap)
  local out = head(a, cap)
  for _, v in ipairs(b) do
    local n = #out
    if n >= cap then break end
    local found = false
    for i = 1, n do
      if out[i] == v then
        found = true
        break
      end
    end
    if not found then out[n + 1] = v end
  end
  return out
end
-- mergeDelta's arithmetic for a base that is kept; x is a delta or a later record.
local function merge (base, x, maxIps, maxSessions)
  for t, b in pairs(x.ft) do base.ft[t] = (base.ft[t] or 0) + b end
  base.b = base.b + x.b
  base.r = base.r + x.r
  base.ips = union(base.ips, x.ips, maxIps)
  base.s = union(base.s, x.s, maxSessions)
  if x.st < base.st then base.st = x.st end
  if x.la > base.la then base.la = x.la end
end
local function add (key, field, n)
  if n ~= 0 then call('HINCRBY', key, field, n) end
end
-- cmd key members…, 1000 arguments per call (unpack() is bounded by Lua's C
-- stack); members holds pairs for HSET and ZADD, so the chunk size is even.
local function each (cmd, key, members)
  for i = 1, #members, 1000 do call(cmd, key, unpack(members, i, math.min(i + 999, #members))) end
end
`

/**
 * flush (one chunk of a batch) — KEYS: records, pending, qualified, by-bytes,
 * meta, counters, this chunk's marker[, markers of an earlier batch to delete…].
 * ARGV: minBytes, accumulatorTimeoutMs, maxIps, maxSessions, chunk JSON
 * ([[uid, bytes, requests, fileTypes, ips, sessions, firstSeen, lastSeen], …]),
 * marker TTL ms. Returns the result JSON {created, qualified, discarded: [[uid, bytes, start], …]}.
 *
 * The marker: a chunk whose reply was lost (timeout, dropped connection) may
 * or may not have run; the batch is retried with the same id, so the chunk
 * comes back with the same marker, finds it and gets its first result back
 * instead of being merged twice. Finding it renews its TTL: a batch that keeps
 * failing keeps its markers. The store passes the markers of a batch whose
 * every chunk answered, which nothing retries any more: they go, even when
 * this chunk is a repeat.
 */
const FLUSH = `${PRELUDE}
for i = 8, #KEYS, 1000 do call('DEL', unpack(KEYS, i, math.min(i + 999, #KEYS))) end
local done = call('GET', KEYS[7])
if done then
  call('PEXPIRE', KEYS[7], ARGV[6])
  return done
end
local minBytes, timeout = tonumber(ARGV[1]), tonumber(ARGV[2])
local maxIps, maxSessions = tonumber(ARGV[3]), tonumber(ARGV[4])
local order, stored, storedStart, current, discarded = {}, {}, {}, {}, {}
local created, qualified, cleanups, lost = 0, 0, 0, 0
local qUids, qBytes, pUids, pBytes = 0, 0, 0, 0
local batch = cdecode(ARGV[5])
-- Read every stored record first, with HMGET: one call per 1000 uids.
local seen = {}
for _, d in ipairs(batch) do
  if not seen[d[1]] then
    seen[d[1]] = true
    order[#order + 1] = d[1]
  end
end
for i = 1, #order, 1000 do
  local last = math.min(i + 999, #order)
  local raws = call('HMGET', KEYS[1], unpack(order, i, last))
  for j = i, last do
    local raw, uid = raws[j - i + 1], order[j]
    local base = raw and cdecode(raw) or false
    current[uid] = base
    stored[uid] = (not base and 'none') or (base.q and 'q') or 'p'
    storedStart[uid] = base and base.st
  end
end
for _, d in ipairs(batch) do
  local uid = d[1]
  local base = current[uid]
  local x = { b = d[2], r = d[3], ft = d[4], ips = d[5], s = d[6], st = d[7], la = d[8] }
  local wasQualified = false
  if base then
    if base.q then qUids, qBytes = qUids - 1, qBytes - base.b else pUids, pBytes = pUids - 1, pBytes - base.b end
    if not base.q and x.st - base.st > timeout then
      discarded[#discarded + 1] = discard(uid, base)
      cleanups, lost = cleanups + 1, lost + base.b
      base = false
    else
      wasQualified = base.q
    end
  end
  local rec = base
  if rec then
    merge(rec, x, maxIps, maxSessions)
    rec.q = rec.q or rec.b >= minBytes
  else
    rec = x
    rec.ips, rec.s, rec.q = head(x.ips, maxIps), head(x.s, maxSessions), x.b >= minBytes
    created = created + 1
  end
  if rec.q and not wasQualified then qualified = qualified + 1 end
  if rec.q then qUids, qBytes = qUids + 1, qBytes + rec.b else pUids, pBytes = pUids + 1, pBytes + rec.b end
  current[uid] = rec
end
-- Variadic writes, a few hundred members per call: a redis.call per field
-- would cost more than all the merging above.
local records, byBytes, pending, toQualified, notPending = {}, {}, {}, {}, {}
for _, uid in ipairs(order) do
  local rec, was = current[uid], stored[uid]
  records[#records + 1] = uid
  records[#records + 1] = encode(rec)
  byBytes[#byBytes + 1] = rec.b
  byBytes[#byBytes + 1] = uid
  if rec.q then
    if was ~= 'q' then toQualified[#toQualified + 1] = uid end
    if was == 'p' then notPending[#notPending + 1] = uid end
  elseif was ~= 'p' or storedStart[uid] ~= rec.st then
    pending[#pending + 1] = rec.st
    pending[#pending + 1] = uid
  end
end
each('HSET', KEYS[1], records)
each('ZADD', KEYS[4], byBytes)
each('ZADD', KEYS[2], pending)
each('SADD', KEYS[3], toQualified)
each('ZREM', KEYS[2], notPending)
add(KEYS[6], 'total_recorded_uids', created)
add(KEYS[6], 'accumulator_cleanups', cleanups)
add(KEYS[6], 'bytes_discarded', lost)
add(KEYS[5], 'q_uids', qUids)
add(KEYS[5], 'q_bytes', qBytes)
add(KEYS[5], 'p_uids', pUids)
add(KEYS[5], 'p_bytes', pBytes)
local result = '{"created":' .. num(created) .. ',"qualified":' .. num(qualified) ..
  ',"discarded":[' .. concat(discarded, ',') .. ']}'
call('SET', KEYS[7], result, 'PX', ARGV[6])
return result
`

/**
 * expire, one chunk — KEYS: records, pending, by-bytes, meta, counters.
 * ARGV: now, accumulatorTimeoutMs, most candidates to look at.
 * Returns {candidates looked at, JSON [[uid, bytes, start], …] of those discarded}.
 * O(chunk · log n): the pending set is ordered by start time; a 1 ms margin
 * covers float rounding and isExpired's own comparison decides. The caller
 * repeats while a full chunk discarded something (see RedisStore.expire).
 */
const EXPIRE = `${PRELUDE}
local now, timeout = tonumber(ARGV[1]), tonumber(ARGV[2])
local out, removed, lost = {}, {}, 0
local candidates = call('ZRANGEBYSCORE', KEYS[2], '-inf', num(now - timeout + 1), 'LIMIT', 0, tonumber(ARGV[3]))
for _, uid in ipairs(candidates) do
  local raw = call('HGET', KEYS[1], uid)
  if raw then
    local r = cdecode(raw)
    if not r.q and now - r.st > timeout then
      removed[#removed + 1] = uid
      out[#out + 1] = discard(uid, r)
      lost = lost + r.b
    end
  end
end
if #removed > 0 then
  each('HDEL', KEYS[1], removed)
  each('ZREM', KEYS[2], removed)
  each('ZREM', KEYS[3], removed)
  add(KEYS[5], 'accumulator_cleanups', #removed)
  add(KEYS[5], 'bytes_discarded', lost)
  add(KEYS[4], 'p_uids', -#removed)
  add(KEYS[4], 'p_bytes', -lost)
end
return { #candidates, '[' .. concat(out, ',') .. ']' }
`

/**
 * seal, step 1 — KEYS: records, qualified, by-bytes, meta, stage, stage-meta.
 * ARGV: now, intervalMs, force ('1' | '0'), token, clock-back slack ms.
 * Returns {status, sealedAt, nextSealAt, [uid, record JSON, …]} with status
 * `scheduled` (first call), `waiting` (not due), `empty` (sealed, nothing
 * qualified) or `staged`. Due as src/meter/seal-schedule.ts says: at
 * `next_seal_at`, or at once when `now` is before `scheduled_at` (the clock
 * went back). A stage left by a sealer that never came back is returned as
 * it is (and claimed with the new token) instead of taking new records.
 */
const STAGE = `${PRELUDE}
local now, interval, force, token = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1', ARGV[4]
local schedule = call('HMGET', KEYS[4], 'next_seal_at', 'scheduled_at')
local next, setAt = schedule[1], schedule[2]
if call('EXISTS', KEYS[6]) == 1 then
  call('HSET', KEYS[6], 'token', token)
  return { 'staged', call('HGET', KEYS[6], 'sealed_at'), next or '', call('HGETALL', KEYS[5]) }
end
local at = num(now + interval)
if not next and not force then
  call('HSET', KEYS[4], 'next_seal_at', at, 'scheduled_at', num(now))
  return { 'scheduled', '', at, {} }
end
local clockBack = setAt and now < tonumber(setAt) - tonumber(ARGV[5])
if next and not force and now < tonumber(next) and not clockBack then return { 'waiting', '', next, {} } end
local uids = call('SMEMBERS', KEYS[2])
call('HSET', KEYS[4], 'next_seal_at', at, 'scheduled_at', num(now))
if #uids == 0 then return { 'empty', '', at, {} } end
local flat, bytes = {}, 0
for i = 1, #uids, 1000 do
  local last = math.min(i + 999, #uids)
  local raws = call('HMGET', KEYS[1], unpack(uids, i, last))
  for j = i, last do
    local raw = raws[j - i + 1]
    bytes = bytes + cdecode(raw).b
    flat[#flat + 1] = uids[j]
    flat[#flat + 1] = raw
  end
end
each('HSET', KEYS[5], flat)
each('HDEL', KEYS[1], uids)
each('ZREM', KEYS[3], uids)
call('DEL', KEYS[2])
add(KEYS[4], 'q_uids', -#uids)
add(KEYS[4], 'q_bytes', -bytes)
call('HSET', KEYS[6], 'token', token, 'sealed_at', num(now), 'prev_next_seal_at', next or '', 'prev_scheduled_at', setAt or '')
return { 'staged', num(now), at, flat }
`

/**
 * seal, step 2 — KEYS: stage, stage-meta, outbox, seq, meta, counters, then one
 * report key per report. ARGV: token, then reportId, body, uids, bytes per report.
 * Returns {'committed', createdAt, seq…}, {'fenced'} when the stage is no longer
 * this sealer's, or {'duplicate', reportId} when an id is already in the outbox.
 */
const COMMIT = `${PRELUDE}
local n = #KEYS - 6
if call('HGET', KEYS[2], 'token') ~= ARGV[1] then
  -- A resent commit that already went through finds its own reports.
  if n > 0 and call('HGET', KEYS[7], 'sealed_by') == ARGV[1] then
    local out = { 'committed', call('HGET', KEYS[7], 'created_at') }
    for i = 1, n do out[#out + 1] = call('HGET', KEYS[6 + i], 'seq') end
    return out
  end
  return { 'fenced' }
end
for i = 1, n do
  if call('EXISTS', KEYS[6 + i]) == 1 then return { 'duplicate', ARGV[4 * i - 2] } end
end
local createdAt = call('HGET', KEYS[2], 'sealed_at')
local out, total = { 'committed', createdAt }, 0
for i = 1, n do
  local id, body, uids, bytes = ARGV[4 * i - 2], ARGV[4 * i - 1], ARGV[4 * i], ARGV[4 * i + 1]
  local seq = call('INCR', KEYS[4])
  call('HSET', KEYS[6 + i], 'seq', seq, 'report_id', id, 'created_at', createdAt, 'body', body,
    'uids', uids, 'bytes', bytes, 'attempts', 0, 'sealed_by', ARGV[1])
  call('RPUSH', KEYS[3], id)
  total = total + tonumber(bytes)
  out[#out + 1] = seq
end
add(KEYS[5], 'outbox_bytes', total)
add(KEYS[6], 'reports_created', n)
if n > 0 then add(KEYS[6], 'windows_sealed', 1) end
call('DEL', KEYS[1], KEYS[2])
return out
`

/**
 * seal, undo of step 1 (render threw or the commit was refused) — KEYS: records,
 * pending, qualified, by-bytes, meta, counters, stage, stage-meta. ARGV: token,
 * maxIps, maxSessions. Puts the staged records back and restores the schedule.
 * A uid flushed meanwhile started a new live record; it is merged into the
 * staged one, as if the seal had never happened, and its cycle is uncounted.
 */
const UNSTAGE = `${PRELUDE}
if call('HGET', KEYS[8], 'token') ~= ARGV[1] then return 0 end
local maxIps, maxSessions = tonumber(ARGV[2]), tonumber(ARGV[3])
local prev = call('HMGET', KEYS[8], 'prev_next_seal_at', 'prev_scheduled_at')
for i, field in ipairs({ 'next_seal_at', 'scheduled_at' }) do
  if not prev[i] or prev[i] == '' then call('HDEL', KEYS[5], field) else call('HSET', KEYS[5], field, prev[i]) end
end
local flat = call('HGETALL', KEYS[7])
local qUids, qBytes, pUids, pBytes, cycles = 0, 0, 0, 0, 0
for i = 1, #flat, 2 do
  local uid, rec = flat[i], cdecode(flat[i + 1])
  local raw = call('HGET', KEYS[1], uid)
  if raw then
    local live = cdecode(raw)
    if live.q then qUids, qBytes = qUids - 1, qBytes - live.b else
      pUids, pBytes = pUids - 1, pBytes - live.b
      call('ZREM', KEYS[2], uid)
    end
    merge(rec, live, maxIps, maxSessions)
    cycles = cycles + 1
  end
  rec.q = true
  call('HSET', KEYS[1], uid, encode(rec))
  call('ZADD', KEYS[4], rec.b, uid)
  call('SADD', KEYS[3], uid)
  qUids, qBytes = qUids + 1, qBytes + rec.b
end
add(KEYS[5], 'q_uids', qUids)
add(KEYS[5], 'q_bytes', qBytes)
add(KEYS[5], 'p_uids', pUids)
add(KEYS[5], 'p_bytes', pBytes)
add(KEYS[6], 'total_recorded_uids', -cycles)
call('DEL', KEYS[7], KEYS[8])
return 1
`

// Read scripts: one consistent snapshot per call. Report keys are built from
// ARGV[1] (the report prefix), which carries the same hash tag as KEYS[1].

/** outbox head — KEYS: outbox. ARGV: report prefix, last index ('0': the head, '-1': all). Returns the entries' HGETALLs in delivery order. */
const OUTBOX = `
local out = {}
for i, id in ipairs(redis.call('LRANGE', KEYS[1], 0, ARGV[2])) do
  out[i] = redis.call('HGETALL', ARGV[1] .. id)
end
return out
`

/** records — KEYS: records, stage. Returns {live HGETALL, staged HGETALL}. */
const RECORDS = `
return { redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]) }
`

/**
 * summary — KEYS: meta, by-bytes, records. ARGV: top.
 * Returns {{q_uids, q_bytes, p_uids, p_bytes}, [uid, record JSON, …]} where the
 * records are every one with at least the bytes of the top-th: ties at the cut
 * are ordered by uid in JS (compareRecords compares UTF-16 units, Redis bytes).
 */
const SUMMARY = `
local totals = redis.call('HMGET', KEYS[1], 'q_uids', 'q_bytes', 'p_uids', 'p_bytes')
for i = 1, 4 do totals[i] = totals[i] or '0' end
local top, flat = tonumber(ARGV[1]), {}
if top > 0 then
  local nth = redis.call('ZREVRANGE', KEYS[2], top - 1, top - 1, 'WITHSCORES')
  local uids
  if #nth == 0 then uids = redis.call('ZRANGE', KEYS[2], 0, -1) else uids = redis.call('ZRANGEBYSCORE', KEYS[2], nth[2], '+inf') end
  for _, uid in ipairs(uids) do
    flat[#flat + 1] = uid
    flat[#flat + 1] = redis.call('HGET', KEYS[3], uid)
  end
end
return { totals, flat }
`

/** Every script, by the name it gets on the ioredis client (`defineCommand`). */
/**
 * The reporter lease (one instance seals and delivers at a time). KEYS: lease,
 * fence. ARGV: holder, ttl ms, 'hold' | 'release'. 'hold' renews the lease of
 * its holder or takes a free one (bumping the fence) and returns the fencing
 * number; 0 when another holder has it. 'release' frees it if held.
 */
const LEASE = `
local current = redis.call('GET', KEYS[1])
if ARGV[3] == 'release' then
  if current == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
  return 0
end
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(redis.call('GET', KEYS[2]) or '1')
end
if current == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return redis.call('INCR', KEYS[2])
end
return 0
`

export const SCRIPTS = Object.freeze({
  smLease: LEASE,
  smFlush: FLUSH,
  smExpire: EXPIRE,
  smStage: STAGE,
  smCommit: COMMIT,
  smUnstage: UNSTAGE,
  smOutbox: OUTBOX,
  smRecords: RECORDS,
  smSummary: SUMMARY,
  ...OUTBOX_SCRIPTS
})

export type ScriptName = keyof typeof SCRIPTS
