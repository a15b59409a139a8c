import { PRELUDE } from './redis-lua-prelude.ts'

// The scripts of a seal: stage the qualified records, commit their reports to
// the outbox, or put the stage back (src/store/redis-sealer.ts).

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

/** The seal's scripts, by the name they get on the ioredis client; merged into `SCRIPTS`. */
export const SEAL_SCRIPTS = Object.freeze({
  smStage: STAGE,
  smCommit: COMMIT,
  smUnstage: UNSTAGE
})
