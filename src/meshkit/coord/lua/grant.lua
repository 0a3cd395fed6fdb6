-- Grant a lock (or an election term) to ARGV[1] if nobody holds it and no live waiter is queued
-- before it, in one atomic step (queue.lua is prepended).
-- KEYS: the holder hash (owner, value, token, expiring with the lease), the name's fence counter
-- (never expiring), the name's queue, ARGV[1]'s ticket.
-- ARGV: owner, ttl in ms, value, the name's channel, enqueue ('1': wait in the queue; '0': try
-- once, never jumping the queue), the tickets' key prefix, the ticket's expiry in ms.
-- Returns {1, token} when granted (also when ARGV[1] holds it already, handed over by a release
-- or a retried grant: the lease is then extended to ttl from now), else {0, pttl, last}: the
-- holder's remaining lease in ms, how long a waiter may sleep before it must look again (a holder
-- that dies never releases), and the last token granted: a hand-off message with a greater token
-- was granted after this call ran. Enqueueing again refreshes the ticket (and re-queues a waiter whose
-- ticket had expired, at the back).
local lock, fence, queue, mine = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local owner, ttl, value, channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local held = redis.call('HGET', lock, 'owner')
if held == owner then
  redis.call('PEXPIRE', lock, ttl)
  return {1, redis.call('HGET', lock, 'token')}
end
if not held then
  -- Free (released with nobody live queued, or the holder's lease ran out): the head first.
  local head, token = hand_off(lock, fence, queue, ARGV[6], channel)
  if head == owner then
    return {1, token}
  end
  if not head then
    if ARGV[5] == '1' then
      redis.call('DEL', mine)
    end
    token = grant_to(lock, fence, owner, ttl, value)
    redis.call('PUBLISH', channel, 'grant')
    return {1, token}
  end
end
if ARGV[5] == '1' then
  if redis.call('PEXPIRE', mine, ARGV[7]) == 0 then
    redis.call('LREM', queue, 0, owner)
    redis.call('RPUSH', queue, owner)
    redis.call('HSET', mine, 'ttl', ttl, 'value', value)
    redis.call('PEXPIRE', mine, ARGV[7])
  end
  -- Gone a ticket after the last waiter's last refresh, whoever died holding a place in it.
  redis.call('PEXPIRE', queue, ARGV[7])
end
return {0, redis.call('PTTL', lock), redis.call('GET', fence) or '0'}
