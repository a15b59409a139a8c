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

/** The read scripts, by the name they get on the ioredis client; merged into `SCRIPTS`. */
export const READ_SCRIPTS = Object.freeze({
  smOutbox: OUTBOX,
  smRecords: RECORDS,
  smSummary: SUMMARY
})
