import type { OutboxItem } from '../meter/index.ts'

// The Lua scripts of the redis store's outbox after a seal: acknowledgement,
// failures, parking, splits, putting back and dropping (docs/report-format.md,
// "Refused reports"), and the reads that list it. Each is one atomic step;
// key layout in src/store/redis-keys.ts (`redisKeys`).
//
// The delivery order is `{p}:outbox` (a list, head first); parked reports
// leave it for `{p}:parked` (a sorted set by seq). A report put back by hand
// goes to the front of the list and into `{p}:retried` until it leaves the
// list: the list is then a block of those (and the halves of their splits)
// followed by reports in creation order, so the oldest pending report is
// among the first `SCARD {p}:retried` + 1 (see OUTBOX_STATS).
//
// Like the read scripts of redis-read-scripts.ts, RETRY, OUTBOX_STATS, OUTBOX_ALL
// and OUTBOX_LIST build report keys from ARGV (the report prefix, with the
// same hash tag as their KEYS): which reports they touch is only known inside
// the script, and every key of the store is in one Cluster slot.

const PRELUDE = `
local call = redis.call
local function add (key, field, n)
  if n ~= 0 then call('HINCRBY', key, field, n) end
end
-- One failed attempt on a report and in the counters; status '' = no answer.
local function failed (report, counters, err, now, status, rejected)
  call('HINCRBY', report, 'attempts', 1)
  call('HSET', report, 'last_error', err, 'last_attempt_at', now)
  if status == '' then call('HDEL', report, 'last_status') else call('HSET', report, 'last_status', status) end
  if rejected then call('HINCRBY', report, 'rejections', 1) end
  call('HINCRBY', counters, 'reports_failed', 1)
  call('HSET', counters, 'last_error', err, 'last_error_at', now)
end
-- A report leaves the outbox (ack, drop): from the list or the parked set, its bytes with it.
local function remove (outbox, parked, retried, meta, report, id)
  local h = call('HMGET', report, 'bytes', 'parked_at')
  local bytes = tonumber(h[1])
  if h[2] then
    call('ZREM', parked, id)
    add(meta, 'parked_bytes', -bytes)
  else
    call('LREM', outbox, 1, id)
    call('SREM', retried, id)
    add(meta, 'outbox_bytes', -bytes)
  end
  call('DEL', report)
  return bytes
end
`

/** Fields of an entry without its body, in the order OUTBOX_LIST and DROP return them (then the body's size). */
export const ITEM_FIELDS = [
  'seq', 'report_id', 'created_at', 'uids', 'bytes', 'attempts', 'last_error', 'last_attempt_at', 'last_status', 'rejections', 'parked_at'
] as const

/**
 * An item as OUTBOX_LIST and DROP return it (ITEM_FIELDS, then the body's
 * size) → OutboxItem; optional fields absent when unset, as in MemoryStore.
 */
export function parseItem (flat: ReadonlyArray<string | number | null>): OutboxItem {
  const field = (name: typeof ITEM_FIELDS[number]): string | null => {
    const value = flat[ITEM_FIELDS.indexOf(name)]
    return value === null || value === undefined ? null : String(value)
  }
  const item: OutboxItem = {
    seq: Number(field('seq')),
    reportId: field('report_id') ?? '',
    createdAt: Number(field('created_at')),
    uids: Number(field('uids')),
    bytes: Number(field('bytes')),
    attempts: Number(field('attempts') ?? 0),
    bodyBytes: Number(flat[ITEM_FIELDS.length] ?? 0)
  }
  const lastError = field('last_error')
  if (lastError !== null) item.lastError = lastError
  const optional = [['last_attempt_at', 'lastAttemptAt'], ['last_status', 'lastStatus'], ['parked_at', 'parkedAt']] as const
  for (const [name, key] of optional) {
    const value = field(name)
    if (value !== null) item[key] = Number(value)
  }
  const rejections = Number(field('rejections') ?? 0)
  if (rejections > 0) item.rejections = rejections
  return item
}

const ITEM = `
local function item (key)
  local out = call('HMGET', key, ${ITEM_FIELDS.map((f) => `'${f}'`).join(', ')})
  out[#out + 1] = call('HSTRLEN', key, 'body')
  return out
end
`

/**
 * outboxAck — KEYS: outbox, report, meta, counters, parked, retried. ARGV:
 * reportId, now. Returns 1, or 0 when the report is not in the outbox. A
 * parked report can be acknowledged too: a delivery that was in flight when
 * another attempt got it parked.
 */
const ACK = `${PRELUDE}
if call('EXISTS', KEYS[2]) == 0 then return 0 end
local bytes = remove(KEYS[1], KEYS[5], KEYS[6], KEYS[3], KEYS[2], ARGV[1])
add(KEYS[4], 'total_reports_sent', 1)
add(KEYS[4], 'total_bytes_reported', bytes)
call('HSET', KEYS[4], 'last_success_at', ARGV[2])
return 1
`

/**
 * outboxFail — KEYS: report, counters. ARGV: error, now, HTTP status or '',
 * '1' when the attempt was refused (counts towards parking). Returns 1, or 0
 * when the report is not in the outbox.
 */
const FAIL = `${PRELUDE}
if call('EXISTS', KEYS[1]) == 0 then return 0 end
failed(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3] or '', ARGV[4] == '1')
return 1
`

/**
 * outboxPark — KEYS: outbox, parked, retried, report, meta, counters. ARGV:
 * reportId, error, now, HTTP status or ''. Counts the refused attempt and
 * moves the report from the list to the parked set. Returns 1, or 0 when it
 * is not pending.
 */
const PARK = `${PRELUDE}
local h = call('HMGET', KEYS[4], 'seq', 'bytes', 'parked_at')
if not h[1] or h[3] then return 0 end
failed(KEYS[4], KEYS[6], ARGV[2], ARGV[3], ARGV[4], true)
call('HSET', KEYS[4], 'parked_at', ARGV[3])
call('LREM', KEYS[1], 1, ARGV[1])
call('SREM', KEYS[3], ARGV[1])
call('ZADD', KEYS[2], h[1], ARGV[1])
add(KEYS[5], 'outbox_bytes', -tonumber(h[2]))
add(KEYS[5], 'parked_bytes', tonumber(h[2]))
add(KEYS[6], 'reports_parked', 1)
return 1
`

/**
 * outboxSplit — KEYS: outbox, seq, retried, report, meta, counters, then one
 * key per part. ARGV: reportId, error, now, HTTP status or '', then reportId,
 * body, uids, bytes per part (the store checked beforehand that they account
 * for the report: a report's uids and bytes never change). Counts the failed
 * attempt and puts the parts in the report's place, with new seqs and its
 * creation time. Returns {'split'}, {'gone'} when the report is not pending,
 * or {'duplicate', reportId}.
 */
const SPLIT = `${PRELUDE}
local n = #KEYS - 6
local createdAt = call('HGET', KEYS[4], 'created_at')
if not createdAt or call('HEXISTS', KEYS[4], 'parked_at') == 1 then return { 'gone' } end
for i = 1, n do
  if call('EXISTS', KEYS[6 + i]) == 1 then return { 'duplicate', ARGV[4 * i + 1] } end
end
failed(KEYS[4], KEYS[6], ARGV[2], ARGV[3], ARGV[4], false)
local retried = call('SISMEMBER', KEYS[3], ARGV[1]) == 1
for i = 1, n do
  local id = ARGV[4 * i + 1]
  call('HSET', KEYS[6 + i], 'seq', call('INCR', KEYS[2]), 'report_id', id, 'created_at', createdAt, 'body', ARGV[4 * i + 2],
    'uids', ARGV[4 * i + 3], 'bytes', ARGV[4 * i + 4], 'attempts', 0)
  call('LINSERT', KEYS[1], 'BEFORE', ARGV[1], id)
  if retried then call('SADD', KEYS[3], id) end
end
call('LREM', KEYS[1], 1, ARGV[1])
call('SREM', KEYS[3], ARGV[1])
call('DEL', KEYS[4])
add(KEYS[6], 'reports_created', n)
add(KEYS[6], 'reports_split', 1)
return { 'split' }
`

/**
 * outboxRetry — KEYS: outbox, parked, retried, meta. ARGV: report prefix,
 * reportId or '' for every parked report. Puts them at the front of the
 * list, oldest first, their refusals forgotten. Returns their ids in that order.
 */
const RETRY = `${PRELUDE}
local ids = {}
if ARGV[2] == '' then
  ids = call('ZRANGE', KEYS[2], 0, -1)
elseif call('ZSCORE', KEYS[2], ARGV[2]) then
  ids = { ARGV[2] }
end
local bytes = 0
for i = #ids, 1, -1 do
  local key = ARGV[1] .. ids[i]
  bytes = bytes + tonumber(call('HGET', key, 'bytes'))
  call('HDEL', key, 'parked_at', 'rejections')
  call('ZREM', KEYS[2], ids[i])
  call('LPUSH', KEYS[1], ids[i])
  call('SADD', KEYS[3], ids[i])
end
add(KEYS[4], 'parked_bytes', -bytes)
add(KEYS[4], 'outbox_bytes', bytes)
return ids
`

/**
 * outboxDrop — KEYS: outbox, parked, retried, report, meta, counters. ARGV:
 * reportId, '1' to drop a pending report too. Returns {'dropped', item…}
 * (ITEM_FIELDS, then the body's size), {'not-parked'} or {'unknown'}.
 */
const DROP = `${PRELUDE}${ITEM}
if call('EXISTS', KEYS[4]) == 0 then return { 'unknown' } end
if call('HEXISTS', KEYS[4], 'parked_at') == 0 and ARGV[2] ~= '1' then return { 'not-parked' } end
local out = item(KEYS[4])
local bytes = remove(KEYS[1], KEYS[2], KEYS[3], KEYS[5], KEYS[4], ARGV[1])
add(KEYS[6], 'reports_dropped', 1)
add(KEYS[6], 'reports_dropped_bytes', bytes)
table.insert(out, 1, 'dropped')
return out
`

/**
 * outboxStats — KEYS: outbox, meta, parked, retried. ARGV: report prefix.
 * Returns {pending, pending bytes, oldest pending created_at or '', parked,
 * parked bytes}. The oldest pending report is among the block of reports put
 * back by hand at the front and the first one after it (see the file comment).
 */
const OUTBOX_STATS = `
local call = redis.call
local oldest = false
for _, id in ipairs(call('LRANGE', KEYS[1], 0, call('SCARD', KEYS[4]))) do
  local at = tonumber(call('HGET', ARGV[1] .. id, 'created_at'))
  if not oldest or at < oldest then oldest = at end
end
local meta = call('HMGET', KEYS[2], 'outbox_bytes', 'parked_bytes')
return { call('LLEN', KEYS[1]), meta[1] or '0', oldest and string.format('%.0f', oldest) or '', call('ZCARD', KEYS[3]), meta[2] or '0' }
`

/** outbox — KEYS: outbox, parked. ARGV: report prefix. Returns {pending HGETALLs in order, parked HGETALLs by seq}. */
const OUTBOX_ALL = `
local call = redis.call
local out = { {}, {} }
for list, ids in ipairs({ call('LRANGE', KEYS[1], 0, -1), call('ZRANGE', KEYS[2], 0, -1) }) do
  for i, id in ipairs(ids) do out[list][i] = call('HGETALL', ARGV[1] .. id) end
end
return out
`

/** outboxList — KEYS: outbox, parked. ARGV: report prefix. Returns items (ITEM_FIELDS, body size): pending in order, then parked by seq. */
const OUTBOX_LIST = `
local call = redis.call
${ITEM}
local out = {}
for _, ids in ipairs({ call('LRANGE', KEYS[1], 0, -1), call('ZRANGE', KEYS[2], 0, -1) }) do
  for _, id in ipairs(ids) do out[#out + 1] = item(ARGV[1] .. id) end
end
return out
`

/** The outbox scripts, by the name they get on the ioredis client; merged into `SCRIPTS`. */
export const OUTBOX_SCRIPTS = Object.freeze({
  smAck: ACK,
  smFail: FAIL,
  smPark: PARK,
  smSplit: SPLIT,
  smRetry: RETRY,
  smDrop: DROP,
  smOutboxStats: OUTBOX_STATS,
  smOutboxAll: OUTBOX_ALL,
  smOutboxList: OUTBOX_LIST
})
