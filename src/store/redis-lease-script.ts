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

/** The lease script, by the name it gets on the ioredis client; merged into `SCRIPTS`. */
export const LEASE_SCRIPTS = Object.freeze({
  smLease: LEASE
})
