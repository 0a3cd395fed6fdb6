-- Give KEYS[1] (the holder hash) back if ARGV[1] holds it, and wake the waiters on the name's
-- channel ARGV[2]. Returns 1, or 0 when it was not ARGV[1]'s any more (nothing is touched then:
-- a holder whose lease ran out never deletes its successor's).
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], 'release')
  return 1
end
return 0
