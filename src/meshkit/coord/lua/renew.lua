-- Extend ARGV[1]'s lease of KEYS[1] (the holder hash) to ARGV[2] ms from now.
-- Returns 1, or 0 when ARGV[1] does not hold it any more (expired, perhaps taken since).
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
