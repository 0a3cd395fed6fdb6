-- Grant a lock (or an election term) to ARGV[1] if nobody holds it, in one atomic step.
-- KEYS[1]: the holder hash (owner, value, token), expiring with the lease.
-- KEYS[2]: the name's fence counter, never expiring.
-- ARGV: owner, ttl in ms, value, the name's channel.
-- Returns {1, token} when granted (also when ARGV[1] holds it already: a retried grant is
-- harmless), else {0, pttl}: the holder's remaining lease in ms, how long a waiter may sleep
-- before it must look again (a holder that dies never publishes its release).
local held = redis.call('HGET', KEYS[1], 'owner')
if held == ARGV[1] then
  return {1, redis.call('HGET', KEYS[1], 'token')}
end
if held then
  return {0, redis.call('PTTL', KEYS[1])}
end
-- token = max(last + 1, the server clock in microseconds): strictly growing while the counter
-- lives, and still above every earlier token when a restart lost the counter (no persistence)
-- or brought back an old one (a snapshot), as long as the server clock did not go back.
-- Kept as decimal strings: Lua's tostring of a 16-digit number loses digits.
local now = redis.call('TIME')
local clock = now[1] .. string.format('%06d', tonumber(now[2]))
local last = redis.call('GET', KEYS[2])
local token
if last and tonumber(last) >= tonumber(clock) then
  token = string.format('%d', redis.call('INCR', KEYS[2]))
else
  token = clock
  redis.call('SET', KEYS[2], token)
end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'value', ARGV[3], 'token', token)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[4], 'grant')
return {1, token}
