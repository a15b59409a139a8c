// The scripts of the redis store's access state (src/store/access-redis.ts):
// grants, sessions, use counters and the epoch. Keys a script cannot be
// handed (the network index of a grant it evicts, a session it revokes) are
// built from a prefix in ARGV, which carries the same hash tag as KEYS[1],
// as the read scripts do. Every value a script writes it has decoded first,
// so a bad argument fails the script before it changes anything.

/**
 * How long a key outlives the last entry it holds, in ms. @default 300000
 *
 * Entries carry the callers' times (`expiresAt`, `until`) and every read
 * compares them with the caller's `now`: Redis's expiry only collects what
 * nobody can read any more, so it must never come first. A caller's clock
 * may lag Redis's (skew between hosts; a test's manual clock, years behind),
 * and an expiry already past for Redis would delete the key at once, losing
 * a session or a use count the caller still counts on. So a key expires at
 * the later of its last entry's end and Redis's now, plus this margin: skew
 * up to five minutes costs nothing, and a dead key lingers five minutes.
 */
export const ACCESS_EXPIRY_GRACE_MS = 5 * 60_000

/**
 * The helpers every access script starts with. `clock` is Redis's time in ms
 * (scripts may read it: Redis replicates what a script wrote, not the script).
 */
const PRELUDE = `
local call, format, floor, max, ipairs, pairs = redis.call, string.format, math.floor, math.max, ipairs, pairs
local cdecode = cjson.decode
local time = call('TIME')
local clock = tonumber(time[1]) * 1000 + floor(tonumber(time[2]) / 1000)
-- keyPart of src/store/redis-keys.ts, byte for byte: change both or neither.
local function keyPart (s)
  return (string.gsub(s, '[^A-Za-z0-9%-%._~/:]', function (c) return format('%%%02X', string.byte(c)) end))
end
-- When a key whose last entry ends at \`at\` (callers' time) may go (ACCESS_EXPIRY_GRACE_MS).
local function expiry (at)
  return max(at, clock) + ${ACCESS_EXPIRY_GRACE_MS}
end
-- A network's grant index (scores: expiresAt) lives as long as its last grant.
local function fitIndex (key)
  local last = call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if #last > 0 then call('PEXPIREAT', key, expiry(tonumber(last[2]))) end
end
-- A uid's session ids (scores: when their keys expire, Redis time) lose those
-- Redis expired, and the set lives as long as its last session.
local function fitSessions (key)
  call('ZREMRANGEBYSCORE', key, '-inf', '(' .. format('%.0f', clock))
  local last = call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if #last > 0 then call('PEXPIREAT', key, tonumber(last[2])) end
end
`

/**
 * putGrant — KEYS: the uid's grants, the new grant's network index, the
 * epoch. ARGV: network index prefix, grant JSON, perUid, pathsPerNetwork.
 * Returns {1 if renewed else 0, {evicted grant JSON…}} (oldest first).
 *
 * planGrant (src/store/access-store.ts) restated, with the grant's
 * `grantedAt` as now: the same uid+network+agent+directory is replaced;
 * expired grants are dropped (not evicted); then the oldest directory of the
 * new grant's network goes while there are more than pathsPerNetwork, then
 * the oldest network+agent pair while there are more than perUid; a group is
 * as old as its newest grant, ties go to the group seen first (grants ordered
 * by grantedAt, then field), and the new grant's own group never goes.
 * Every grant that leaves the uid's hash leaves its network's index too, the
 * network's expired grants (any uid) go by score, and each key touched
 * expires with its last grant. An eviction moves the epoch.
 */
const PUT_GRANT = `${PRELUDE}
local grant = cdecode(ARGV[2])
local now, perUid, paths = grant.grantedAt, tonumber(ARGV[3]), tonumber(ARGV[4])
local function pairOf (g) return keyPart(g.network) .. ' ' .. keyPart(g.agent) end
local own = pairOf(grant) .. ' ' .. keyPart(grant.directory)
local keep, expired, evicted, replaced, renewed = {}, {}, {}, nil, 0
local flat = call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do
  local e = { field = flat[i], raw = flat[i + 1], g = cdecode(flat[i + 1]) }
  if e.field == own then
    replaced = e
    if e.g.expiresAt > now then renewed = 1 end
  elseif e.g.expiresAt > now then
    keep[#keep + 1] = e
  else
    expired[#expired + 1] = e
  end
end
local function older (a, b)
  if a.g.grantedAt ~= b.g.grantedAt then return a.g.grantedAt < b.g.grantedAt end
  return a.field < b.field
end
table.sort(keep, older)
keep[#keep + 1] = { field = own, raw = ARGV[2], g = grant }
-- planGrant's oldestGroup: beyond limit groups, the one whose newest grant is oldest, never mine.
local function oldestGroup (list, keyOf, mine, limit)
  local newest, order = {}, {}
  for _, e in ipairs(list) do
    local k, at = keyOf(e.g), e.g.grantedAt
    if newest[k] == nil then
      order[#order + 1] = k
      newest[k] = at
    elseif at > newest[k] then
      newest[k] = at
    end
  end
  if #order <= limit then return nil end
  local oldest
  for _, k in ipairs(order) do
    if k ~= mine and (oldest == nil or newest[k] < newest[oldest]) then oldest = k end
  end
  return oldest
end
local function evict (same)
  local left = {}
  for _, e in ipairs(keep) do
    if same(e.g) then evicted[#evicted + 1] = e else left[#left + 1] = e end
  end
  keep = left
end
local function directoryOf (g) return g.directory end
while true do
  local inNetwork = {}
  for _, e in ipairs(keep) do
    if e.g.network == grant.network then inNetwork[#inNetwork + 1] = e end
  end
  local oldest = oldestGroup(inNetwork, directoryOf, grant.directory, paths)
  if oldest == nil then break end
  evict(function (g) return g.network == grant.network and g.directory == oldest end)
end
while true do
  local oldest = oldestGroup(keep, pairOf, pairOf(grant), perUid)
  if oldest == nil then break end
  evict(function (g) return pairOf(g) == oldest end)
end
table.sort(evicted, older)
local touched = { [KEYS[2]] = true }
local function unindex (e)
  local key = ARGV[1] .. keyPart(e.g.network)
  call('ZREM', key, e.raw)
  touched[key] = true
end
for _, e in ipairs(expired) do
  call('HDEL', KEYS[1], e.field)
  unindex(e)
end
for _, e in ipairs(evicted) do
  call('HDEL', KEYS[1], e.field)
  unindex(e)
end
if replaced then unindex(replaced) end
call('HSET', KEYS[1], own, ARGV[2])
call('ZADD', KEYS[2], grant.expiresAt, ARGV[2])
call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local last = grant.expiresAt
for _, e in ipairs(keep) do last = max(last, e.g.expiresAt) end
call('PEXPIREAT', KEYS[1], expiry(last))
for key in pairs(touched) do fitIndex(key) end
if #evicted > 0 then call('INCR', KEYS[3]) end
local out = {}
for i, e in ipairs(evicted) do out[i] = e.raw end
return { renewed, out }
`

/**
 * revoke — KEYS: the uid's grants, the uid's session ids, the epoch. ARGV:
 * network index prefix, session key prefix, uid, now. Removes every grant
 * (from both indexes) and session of the uid and moves the epoch. Returns
 * {live grants removed, live sessions removed}.
 */
const REVOKE = `${PRELUDE}
local now, grants, sessions, touched = tonumber(ARGV[4]), 0, 0, {}
local flat = call('HGETALL', KEYS[1])
for i = 2, #flat, 2 do
  local g = cdecode(flat[i])
  if g.expiresAt > now then grants = grants + 1 end
  local key = ARGV[1] .. keyPart(g.network)
  call('ZREM', key, flat[i])
  touched[key] = true
end
for key in pairs(touched) do fitIndex(key) end
for _, id in ipairs(call('ZRANGE', KEYS[2], 0, -1)) do
  local key = ARGV[2] .. keyPart(id)
  local raw = call('GET', key)
  -- putSession moves a reused id out of its old uid's set; checked again all the same.
  if raw then
    local s = cdecode(raw)
    if s.uid == ARGV[3] then
      call('DEL', key)
      if s.expiresAt > now then sessions = sessions + 1 end
    end
  end
end
call('DEL', KEYS[1], KEYS[2])
call('INCR', KEYS[3])
return { grants, sessions }
`

/**
 * putSession — KEYS: the session, its uid's session ids. ARGV: session ids
 * prefix, session JSON, id, and `1` to slide only. Replaces the session (its
 * expiry slides with it) and lists it under its uid, taking it off another
 * uid's list when the id was theirs. To slide only, it writes nothing unless
 * the same uid's session is there: a slide never brings back a session
 * revoked meanwhile. Returns 1 when written.
 */
const PUT_SESSION = `${PRELUDE}
local s = cdecode(ARGV[2])
local old = call('GET', KEYS[1])
if ARGV[4] == '1' and (not old or cdecode(old).uid ~= s.uid) then return 0 end
if old then
  local was = cdecode(old).uid
  if was ~= s.uid then
    local key = ARGV[1] .. keyPart(was)
    call('ZREM', key, ARGV[3])
    fitSessions(key)
  end
end
local at = expiry(s.expiresAt)
call('SET', KEYS[1], ARGV[2])
call('PEXPIREAT', KEYS[1], at)
call('ZADD', KEYS[2], at, ARGV[3])
fitSessions(KEYS[2])
return 1
`

/**
 * dropSessions — KEYS: the epoch, then each session. ARGV: session ids
 * prefix, then each id (ARGV[i] is the id of KEYS[i]). Moves the epoch when
 * one existed. Returns how many did.
 */
const DROP_SESSIONS = `${PRELUDE}
local dropped, touched = 0, {}
for i = 2, #KEYS do
  local raw = call('GET', KEYS[i])
  if raw then
    local key = ARGV[1] .. keyPart(cdecode(raw).uid)
    call('DEL', KEYS[i])
    call('ZREM', key, ARGV[i])
    touched[key] = true
    dropped = dropped + 1
  end
end
for key in pairs(touched) do fitSessions(key) end
if dropped > 0 then call('INCR', KEYS[1]) end
return dropped
`

/**
 * countUse — KEYS: the counter. ARGV: until (callers' time). Returns the
 * count including this use. The expiry only ever grows: a use with an
 * earlier `until` must not cut short the count a later one relies on.
 */
const COUNT_USE = `${PRELUDE}
local n = call('INCR', KEYS[1])
local at, ttl = expiry(tonumber(ARGV[1])), call('PTTL', KEYS[1])
if ttl < 0 or clock + ttl < at then call('PEXPIREAT', KEYS[1], at) end
return n
`

/** The access scripts, by the name they get on the ioredis client; merged into `SCRIPTS`. */
export const ACCESS_SCRIPTS = Object.freeze({
  smPutGrant: PUT_GRANT,
  smRevoke: REVOKE,
  smPutSession: PUT_SESSION,
  smDropSessions: DROP_SESSIONS,
  smCountUse: COUNT_USE
})
