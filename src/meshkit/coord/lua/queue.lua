-- Shared by grant.lua and release.lua (prepended to each): granting a name, and handing it to
-- the head of its FIFO queue of waiters.
-- The queue {prefix}queue:{name} is a list of owners; each live waiter also has its ticket
-- {prefix}waiter:{name}:{owner}, a hash (ttl in ms, value) with a short expiry that the waiter
-- refreshes while it waits. An entry whose ticket has expired is a dead waiter: it is dropped.

-- Grant `lock` to `owner` for `ttl` ms with a new fencing token, which it returns.
-- token = max(last + 1, the server clock in microseconds): strictly growing while the counter
-- lives, and still above every earlier token when a restart lost the counter (no persistence)
-- or brought back an old one (a snapshot), as long as the server clock did not go back.
-- Kept as decimal strings: Lua's tostring of a 16-digit number loses digits.
local function grant_to(lock, fence, owner, ttl, value)
  local now = redis.call('TIME')
  local clock = now[1] .. string.format('%06d', tonumber(now[2]))
  local last = redis.call('GET', fence)
  local token
  if last and tonumber(last) >= tonumber(clock) then
    token = string.format('%d', redis.call('INCR', fence))
  else
    token = clock
    redis.call('SET', fence, token)
  end
  redis.call('HSET', lock, 'owner', owner, 'value', value, 'token', token)
  redis.call('PEXPIRE', lock, ttl)
  return token
end

-- Hand the free `lock` to the first live waiter of `queue` (`waiters` .. owner is its ticket),
-- dropping dead ones on the way, and tell it on `channel` with 'granted:<owner>:<token>': the
-- waiter takes the grant from that message, without another round trip (redis.py, _wait).
-- Returns its owner and token, or nil when nobody live waits (the queue is then empty, so Redis
-- has deleted it).
local function hand_off(lock, fence, queue, waiters, channel)
  while true do
    local head = redis.call('LPOP', queue)
    if not head then
      return nil
    end
    local ticket = waiters .. head
    local wanted = redis.call('HMGET', ticket, 'ttl', 'value')
    if wanted[1] then
      redis.call('DEL', ticket)
      local token = grant_to(lock, fence, head, wanted[1], wanted[2] or '')
      redis.call('PUBLISH', channel, 'granted:' .. head .. ':' .. token)
      return head, token
    end
  end
end

