"""The Lua scripts behind :class:`RedisState`: every state change is one of these, run atomically.

The limit and breaker scripts are line-for-line ports of ``policy._ratelimit`` and
``policy._breaker`` so that a replica sharing Redis decides exactly as one process would.
Redis Lua numbers are IEEE doubles like Python floats, so the same expressions in the same
order give the same bits; numbers cross the wire as ``%.17g`` strings, which round-trip
exactly (Lua's ``tostring`` keeps only 14 digits, and returned numbers would be truncated to
integers). ``_earliest`` (the retry-after search) is ported with ``ulp`` built from ``frexp``.

Stored forms: a bucket is ``"tokens updated"``, a window ``"ts w ts w ..."`` oldest first, a
breaker a hash (``cfg st out at adm suc``). A limit's key expires ``MARGIN_S`` after its state
would read as fresh anyway, so idle subjects disappear by themselves.
"""

from __future__ import annotations

MARGIN_S = 60.0  # TTLs run on Redis' clock; slack for replicas' clock skew and for test clocks

_COMMON = """
local function num(x) return string.format('%.17g', x) end
local function ulp(x) local _, e = math.frexp(x) return 2 ^ (e - 53) end
local function earliest(now, guess, ok)
  local delay = math.max(0.0, guess)
  local step = ulp(math.max(math.abs(now), delay, 1.0))
  while not ok(now + delay) do
    delay = delay + step
    step = step * 2
  end
  return delay
end
local MARGIN = tonumber(ARGV[1])
local NOW = tonumber(ARGV[2])

-- Rule specs follow in ARGV from index 3, 5 or 6 fields each: kind key-index p1 p2 [p3] amount.
local function spec(i)
  local kind = ARGV[i]
  local r = {kind = kind, key = KEYS[tonumber(ARGV[i + 1])], a = tonumber(ARGV[i + 2]),
             b = tonumber(ARGV[i + 3])}
  if kind == 'w' then
    r.res = tonumber(ARGV[i + 4]); r.amount = ARGV[i + 5]; r.next = i + 6
  else
    r.amount = ARGV[i + 4]; r.next = i + 5
  end
  return r
end

local function load(r)
  local raw = redis.call('GET', r.key)
  if not raw then return nil end
  local xs = {}
  for v in string.gmatch(raw, '%S+') do xs[#xs + 1] = tonumber(v) end
  if r.kind == 'b' then return {xs[1], xs[2]} end
  local st = {}
  for j = 1, #xs, 2 do st[#st + 1] = {xs[j], xs[j + 1]} end
  return st
end

-- Token bucket: a = capacity, b = refill per second.
local function tb_level(r, st, now)
  local elapsed = math.max(0.0, now - st[2])
  return math.min(r.a, st[1] + elapsed * r.b)
end
local function tb_settled(st, now, tokens)
  local updated = now
  if st then updated = math.max(st[2], now) end
  return {tokens, updated}
end

-- Sliding window: a = limit, b = window seconds, res = resolution seconds.
local function sw_used(r, st, now)
  local used = 0
  for _, e in ipairs(st) do if now - e[1] < r.b then used = used + e[2] end end
  return used
end
local function sw_live(r, st, now)
  local live = {}
  for _, e in ipairs(st) do if now - e[1] < r.b then live[#live + 1] = e end end
  return live
end
local function sw_append(r, live, weight, now)
  if weight <= 0 then return live end
  local n = #live
  if n > 0 then
    local last = live[n]
    if now - last[1] <= r.res then
      live[n] = {math.max(now, last[1]), last[2] + weight}
      return live
    end
    now = math.max(now, last[1])
  end
  live[n + 1] = {now, weight}
  return live
end

local function save(r, st)
  if r.kind == 'b' then
    local ms = math.ceil((st[2] + (r.a - st[1]) / r.b - NOW + MARGIN) * 1000)  -- full again, + margin
    return redis.call('SET', r.key, num(st[1]) .. ' ' .. num(st[2]), 'PX', ms)
  end
  if #st == 0 then return redis.call('DEL', r.key) end
  local parts = {}
  for _, e in ipairs(st) do parts[#parts + 1] = num(e[1]) .. ' ' .. num(e[2]) end
  redis.call('SET', r.key, table.concat(parts, ' '), 'PX',
    math.ceil((st[#st][1] + r.b - NOW + MARGIN) * 1000))
end
"""

TAKE = (
    _COMMON
    + """
-- All-or-nothing: states are staged per key (a later rule on the same key sees an earlier
-- take) and written only if every rule allowed. Returns the verdict then, per rule,
-- allowed / remaining / retry-after ('' = never).
local staged, order, out, allowed_all = {}, {}, {}, 1
local i = 3
while i <= #ARGV do
  local r = spec(i); i = r.next
  local cost = tonumber(r.amount)
  local st = staged[r.key]
  if st == nil then st = load(r) end
  local ok, rem, wait, new = false, 0.0, nil, nil  -- wait stays nil (never) if cost > limit
  if r.kind == 'b' then
    if st == nil then st = {r.a, NOW} end
    local level = tb_level(r, st, NOW)
    rem = math.max(0.0, level)
    if level >= cost then
      ok, rem, wait, new = true, math.max(0.0, level - cost), 0.0, tb_settled(st, NOW, level - cost)
    elseif cost <= r.a then
      local guess = st[2] + (cost - st[1]) / r.b - NOW
      wait = earliest(NOW, guess, function(t) return tb_level(r, st, t) >= cost end)
    end
  else
    if st == nil then st = {} end
    local live, used = sw_live(r, st, NOW), 0
    for _, e in ipairs(live) do used = used + e[2] end
    rem = math.max(0.0, r.a - used)
    if used + cost <= r.a then
      ok, rem, wait, new = true, math.max(0.0, r.a - used - cost), 0.0, sw_append(r, live, cost, NOW)
    elseif cost <= r.a then
      local excess, freed, expiry = used + cost - r.a, 0.0, live[#live][1]
      for _, e in ipairs(live) do
        freed = freed + e[2]
        if freed >= excess then expiry = e[1]; break end
      end
      local guess = expiry + r.b - NOW
      wait = earliest(NOW, guess, function(t) return sw_used(r, st, t) + cost <= r.a end)
    end
  end
  if ok then
    if staged[r.key] == nil then order[#order + 1] = r end
    staged[r.key] = new
  else
    allowed_all = 0
  end
  out[#out + 1] = ok and 1 or 0
  out[#out + 1] = num(rem)
  out[#out + 1] = wait and num(wait) or ''
end
for _, r in ipairs(allowed_all == 1 and order or {}) do save(r, staged[r.key]) end
table.insert(out, 1, allowed_all)
return out
"""
)

SETTLE = (
    _COMMON
    + """
-- Refund ('+' amount) or charge ('-' prefix) each rule in turn, like Limiter.reconcile.
local staged, order = {}, {}
local i = 3
while i <= #ARGV do
  local r = spec(i); i = r.next
  local charge = string.sub(r.amount, 1, 1) == '-'
  local amount = tonumber(charge and string.sub(r.amount, 2) or r.amount)
  local st = staged[r.key]
  if st == nil then st = load(r) end
  local new
  if r.kind == 'b' then
    local level = st and tb_level(r, st, NOW) or r.a
    if charge then new = tb_settled(st, NOW, level - amount)
    elseif st == nil then new = {r.a, NOW}
    else new = tb_settled(st, NOW, math.min(r.a, level + amount)) end
  else
    local live = sw_live(r, st or {}, NOW)
    if charge then
      new = sw_append(r, live, amount, NOW)
    else
      new = {}
      for _, e in ipairs(live) do
        local take = math.min(e[2], amount)
        amount = amount - take
        if e[2] - take > 0 then new[#new + 1] = {e[1], e[2] - take} end
      end
    end
  end
  if staged[r.key] == nil then order[#order + 1] = r end
  staged[r.key] = new
end
for _, r in ipairs(order) do save(r, staged[r.key]) end
return 1
"""
)

SPEND_ADD = """
-- ARGV: amount, ttl ms. Float addition in Lua (not INCRBYFLOAT's long double) to match floats.
for _, k in ipairs(KEYS) do
  local total = tonumber(redis.call('GET', k) or '0') + tonumber(ARGV[1])
  redis.call('SET', k, string.format('%.17g', total), 'PX', ARGV[2])
end
return 1
"""

BREAKER = """
-- ARGV: op (allow|record|abandon), now, config fingerprint, window, failure rate, min calls,
-- open seconds, half-open calls, ok (1|0), ttl ms. A different fingerprint starts fresh.
-- Returns 1/0 for allow (admitted), 1 otherwise.
local k = KEYS[1]
local op, now, cfg = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local window, rate, min_calls = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local open_s, trials, ok, ttl = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9] == '1', ARGV[10]
local h = redis.call('HMGET', k, 'cfg', 'st', 'out', 'at', 'adm', 'suc')
local st, out, at, adm, suc = h[2], h[3] or '', tonumber(h[4]), tonumber(h[5]), tonumber(h[6])
local dirty = false
if h[1] ~= cfg then st, out, dirty = 'closed', '', true end

local function set_state(s, o, a, ad, su) st, out, at, adm, suc, dirty = s, o, a, ad, su, true end
local function record(good)
  if st == 'open' then return end
  if st == 'half_open' then
    if not good then set_state('open', '', now, nil, nil) return end
    if suc + 1 >= trials then set_state('closed', '', nil, nil, nil) return end
    set_state('half_open', '', nil, adm, suc + 1)
    return
  end
  local o = out .. (good and '1' or '0')
  if #o > window then o = string.sub(o, #o - window + 1) end
  local _, failures = string.gsub(o, '0', '')
  if #o >= min_calls and failures / #o >= rate then set_state('open', '', now, nil, nil)
  else set_state('closed', o, nil, nil, nil) end
end

local result = 1
if op == 'allow' then
  if st == 'open' then
    if now < at + open_s then result = 0 else set_state('half_open', '', nil, 1, 0) end
  elseif st == 'half_open' then
    if adm < trials then set_state('half_open', '', nil, adm + 1, suc) else result = 0 end
  end
elseif op == 'record' then
  record(ok)
elseif st == 'half_open' then  -- abandon: an unanswered trial counts as failed
  record(false)
end
if dirty then
  redis.call('DEL', k)
  local f = {'cfg', cfg, 'st', st, 'out', out}
  if at then f[#f + 1] = 'at'; f[#f + 1] = string.format('%.17g', at) end
  if adm then f[#f + 1] = 'adm'; f[#f + 1] = adm; f[#f + 1] = 'suc'; f[#f + 1] = suc end
  redis.call('HSET', k, unpack(f))
  redis.call('PEXPIRE', k, ttl)
end
return result
"""

DL_ADD = """
-- KEYS: letter, index, model index, models set. ARGV: member, ttl ms, model, then field pairs.
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
for j = 2, 3 do
  redis.call('ZADD', KEYS[j], 0, ARGV[1])
  redis.call('PEXPIRE', KEYS[j], ARGV[2])
end
redis.call('SADD', KEYS[4], ARGV[3])
redis.call('PEXPIRE', KEYS[4], ARGV[2])
return 1
"""

DL_REPLAY = """
-- KEYS: letter. ARGV: outcome JSON. 0 when the letter is gone.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = redis.call('HINCRBY', KEYS[1], 'replays', 1)
redis.call('HSET', KEYS[1], 'replay:' .. n, ARGV[1])
return 1
"""

DL_PURGE = """
-- KEYS: index, models set, n model indexes, then letters. ARGV: n, index members, model names.
-- Returns how many letters were deleted.
local n, deleted = tonumber(ARGV[1]), 0
for j = 3 + n, #KEYS do deleted = deleted + redis.call('DEL', KEYS[j]) end
for j = 1, 2 + n do
  if j ~= 2 then redis.call('ZREM', KEYS[j], unpack(ARGV, 2, #ARGV - n)) end
end
for j = 1, n do
  if redis.call('EXISTS', KEYS[2 + j]) == 0 then redis.call('SREM', KEYS[2], ARGV[#ARGV - n + j]) end
end
return deleted
"""
