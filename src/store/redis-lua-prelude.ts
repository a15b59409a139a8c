/**
 * The Lua helpers shared by the scripts that write records (flush, expire and
 * the seal's), put before each of them. A record is JSON {b, r, ft, ips, s,
 * st, la, q}. Redis's cjson prints numbers with at most 14 significant digits
 * (1.2345678901235e+15) and cannot be told more, so cjson.encode is exact
 * only below 1e14: records whose bytes (and so every count in them) and times
 * are below that take cjson's C encoder; larger ones are written by hand with
 * %.0f, exact up to 2^53. cjson encodes an empty array as {}: readers treat
 * {} as []. (Numbers handed to redis.call are printed by Redis with %.17g:
 * exact.) Library functions are locals: a global lookup costs on every call
 * of a hot loop.
 */
export const PRELUDE = `
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
