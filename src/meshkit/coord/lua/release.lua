-- Give KEYS[1] (the holder hash) back if ARGV[1] holds it and hand it straight to the first live
-- waiter of the queue KEYS[3] (queue.lua is prepended; KEYS[2] is the fence counter), publishing
-- 'granted:<owner>' on the name's channel ARGV[2], or 'release' when nobody live waits. ARGV[3]:
-- the tickets' key prefix. With a 4th key (ARGV[1]'s ticket) it is a waiter leaving: it first
-- takes itself out of the queue and deletes its ticket (and gives back a grant it got meanwhile).
-- Returns 1, or 0 when it was not ARGV[1]'s (nothing else is touched then: a holder whose lease
-- ran out never deletes its successor's).
if KEYS[4] then
  redis.call('LREM', KEYS[3], 0, ARGV[1])
  redis.call('DEL', KEYS[4])
end
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
if not hand_off(KEYS[1], KEYS[2], KEYS[3], ARGV[3], ARGV[2]) then
  redis.call('PUBLISH', ARGV[2], 'release')
end
return 1
