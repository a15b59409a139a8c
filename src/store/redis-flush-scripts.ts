import { PRELUDE } from './redis-lua-prelude.ts'

// The scripts that write live records between seals: flush (one chunk of a
// batch of deltas merged) and expire (sub-threshold records past their time
// discarded).

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
 * cursorBegin — KEYS: the log's cursor hash. ARGV: batch id, the position the
 * batch reaches. Sent before the chunks of a batch with a cursor: until the
 * commit, the hash says which lines the batch holds, so that a reader
 * restarted after a crash sends exactly the same batch again.
 */
const CURSOR_BEGIN = `
redis.call('HSET', KEYS[1], 'pending_id', ARGV[1], 'pending_to', ARGV[2])
return 1
`

/**
 * cursorCommit — KEYS: the log's cursor hash, then the markers of every chunk
 * of the batch. ARGV: batch id, position. Sent after the chunks, in the same
 * pipeline: the position moves only when every chunk is applied (its marker
 * is there), so it is never ahead of the usage.
 */
const CURSOR_COMMIT = `
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    return redis.error_reply('a chunk of the batch is not applied: the log position stays')
  end
end
redis.call('HSET', KEYS[1], 'position', ARGV[2])
if redis.call('HGET', KEYS[1], 'pending_id') == ARGV[1] then redis.call('HDEL', KEYS[1], 'pending_id', 'pending_to') end
return 1
`

/** The flush and expiry scripts, by the name they get on the ioredis client; merged into `SCRIPTS`. */
export const FLUSH_SCRIPTS = Object.freeze({
  smFlush: FLUSH,
  smExpire: EXPIRE,
  smCursorBegin: CURSOR_BEGIN,
  smCursorCommit: CURSOR_COMMIT
})
