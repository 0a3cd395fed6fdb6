-- Atomic token bucket. KEYS[1] = bucket key; ARGV = rate (tokens/s), burst, tokens wanted.
-- Uses the Redis server's clock, so clients with skewed clocks share one consistent bucket.
-- Returns {allowed (0/1), retry_after in microseconds}.
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1])
local stamp = tonumber(state[2])
if tokens == nil then
  tokens = burst
  stamp = now
end
if now > stamp then
  tokens = math.min(burst, tokens + (now - stamp) * rate / 1000000)
  stamp = now
end
local allowed = 0
local retry_after = 0
if tokens >= wanted then
  tokens = tokens - wanted
  allowed = 1
else
  retry_after = math.ceil((wanted - tokens) * 1000000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'stamp', stamp)
-- Idle buckets disappear once they would be full again anyway.
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {allowed, retry_after}
