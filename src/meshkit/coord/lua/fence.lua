-- Fenced write: set fields of the hash KEYS[1] only if the fence stored in its field ARGV[1] is
-- at most the writer's token ARGV[2] (the same holder writes many times with one token; a holder
-- whose lease ended has a strictly lower token than its successor). The token is stored with the
-- fields. ARGV[3..]: field, value, field, value...
-- Returns 1 when written, 0 (nothing written) for a stale token.
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if stored and tonumber(stored) > tonumber(ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], unpack(ARGV, 3))
return 1
