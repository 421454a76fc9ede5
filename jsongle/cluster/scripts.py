"""The Lua scripts that change room state in Redis, atomically.

Redis runs one script at a time, so a cap checked in a script holds when the
member is added: two joins racing for the last seat on two nodes cannot
both pass.  Every change bumps one cluster-wide sequence number and
publishes the room's new snapshot to each node with a member in it before or
after, so every node's copy follows the commits in order.  Scripts answer
with one JSON string.

Keys (prefix ``jsongle:``): ``room:<rid>`` the room as JSON
``{"k": kind, "m": [[cid, uid, identity-json, node], ...]}`` in join order;
``rooms`` the set of non-empty room ids; ``conn:<cid>`` the rooms of a
connection; ``nodeconns:<node>`` the connections of a node that are in rooms;
``mucs:<uid>`` multi-user rooms of a user (rid -> connections);
``nodes``, ``alive:<node>`` (expires after nodeTimeout) and ``users``
(node -> connected clients); ``seq`` the sequence; ``epoch`` a token per
life of the data.
"""

from __future__ import annotations

from jsongle.signaling import errors

PREFIX = "jsongle:"

_COMMON = r"""
local P = 'jsongle:'
-- The codes of jsongle.signaling.roomrules (filled in below).
local FULL = %(full)d
local TOO_MANY_ROOMS = %(too_many_rooms)d
local WRONG_KIND = %(wrong_kind)d

local function load(rid)
  local raw = redis.call('GET', P .. 'room:' .. rid)
  if raw then return cjson.decode(raw) end
  return nil
end

local function copy(list)
  local out = {}
  for i, v in ipairs(list) do out[i] = v end
  return out
end

local function save(rid, room)
  if #room.m == 0 then
    redis.call('DEL', P .. 'room:' .. rid)
    redis.call('SREM', P .. 'rooms', rid)
  else
    redis.call('SET', P .. 'room:' .. rid, cjson.encode(room))
    redis.call('SADD', P .. 'rooms', rid)
  end
end

-- Publish the room's snapshot (false once empty) to the nodes of its
-- members before and after; returns the sequence number of the change.
local function notify(rid, room, before)
  local seq = redis.call('INCR', P .. 'seq')
  local nodes = {}
  for _, m in ipairs(before) do nodes[m[4]] = true end
  for _, m in ipairs(room.m) do nodes[m[4]] = true end
  local snapshot = false
  if #room.m > 0 then snapshot = room end
  local payload = cjson.encode({t = 'room', rid = rid, seq = seq, room = snapshot})
  for node, _ in pairs(nodes) do
    redis.call('PUBLISH', P .. 'node:' .. node, payload)
  end
  return seq
end

local function join(rid, kind, member, caps, force)
  local room = load(rid)
  if room then
    if room.k ~= kind then return {r = 'err', code = WRONG_KIND, kind = room.k} end
    for _, m in ipairs(room.m) do
      if m[1] == member[1] then
        return {r = 'already', room = room, seq = tonumber(redis.call('GET', P .. 'seq') or '0')}
      end
    end
  else
    room = {k = kind, m = {}}
  end
  local count = #room.m
  if kind == 'muc' then
    local mucs = P .. 'mucs:' .. member[2]
    if not force then
      if count >= caps[2] then return {r = 'err', code = FULL} end
      if redis.call('HEXISTS', mucs, rid) == 0 and redis.call('HLEN', mucs) >= caps[3] then
        return {r = 'err', code = TOO_MANY_ROOMS}
      end
    end
    redis.call('HINCRBY', mucs, rid, 1)
  elseif count >= caps[1] and not force then
    return {r = 'err', code = FULL}
  end
  local before = copy(room.m)
  room.m[count + 1] = member
  save(rid, room)
  redis.call('SADD', P .. 'conn:' .. member[1], rid)
  redis.call('SADD', P .. 'nodeconns:' .. member[4], member[1])
  local seq = notify(rid, room, before)
  return {r = 'ok', room = room, seq = seq, created = (count == 0)}
end

local function leave(rid, cid)
  local room = load(rid)
  if not room then return {r = 'none', kind = false} end
  local index = nil
  for i, m in ipairs(room.m) do
    if m[1] == cid then index = i end
  end
  if not index then return {r = 'none', kind = room.k} end
  local before = copy(room.m)
  local left = table.remove(room.m, index)
  save(rid, room)
  local rooms = P .. 'conn:' .. cid
  redis.call('SREM', rooms, rid)
  if redis.call('SCARD', rooms) == 0 then
    redis.call('SREM', P .. 'nodeconns:' .. left[4], cid)
  end
  if room.k == 'muc' then
    local mucs = P .. 'mucs:' .. left[2]
    if redis.call('HINCRBY', mucs, rid, -1) <= 0 then redis.call('HDEL', mucs, rid) end
  end
  local seq = notify(rid, room, before)
  local remaining = room.m
  if #remaining == 0 then remaining = false end
  return {r = 'ok', rid = rid, kind = room.k, left = left, remaining = remaining, seq = seq}
end

local function leave_all(cid)
  local rids = redis.call('SMEMBERS', P .. 'conn:' .. cid)
  table.sort(rids)
  local results = {}
  for _, rid in ipairs(rids) do
    local result = leave(rid, cid)
    if result.r == 'ok' then results[#results + 1] = result end
  end
  redis.call('DEL', P .. 'conn:' .. cid)
  return results
end
""" % {"full": errors.FULL, "too_many_rooms": errors.TOO_MANY_ROOMS, "wrong_kind": errors.BAD_PARAMETERS}

#: ARGV: rid, kind, cid, uid, identity JSON, node, maxMembersPerRoom,
#: maxMembersPerMultiRoom, maxMultiRoomPerUser, force (1 skips the caps).
JOIN = _COMMON + r"""
local caps = {tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])}
return cjson.encode(join(ARGV[1], ARGV[2], {ARGV[3], ARGV[4], ARGV[5], ARGV[6]}, caps, ARGV[10] == '1'))
"""

#: ARGV: rid, cid.
LEAVE = _COMMON + r"""
return cjson.encode(leave(ARGV[1], ARGV[2]))
"""

#: ARGV: cid.
LEAVE_ALL = _COMMON + r"""
local results = leave_all(ARGV[1])
if #results == 0 then return '[]' end
return cjson.encode(results)
"""

#: ARGV: node, heartbeat TTL in ms, connected clients on that node, a
#: random token. Answers the cluster gauges, the nodes whose heartbeat has
#: expired and the epoch: a token set once per life of the Redis data, so a
#: node can tell a broken link (same epoch) from a Redis restarted empty.
HEARTBEAT = r"""
local P = 'jsongle:'
local node = ARGV[1]
redis.call('SET', P .. 'epoch', ARGV[4], 'NX')
redis.call('SET', P .. 'alive:' .. node, '1', 'PX', ARGV[2])
redis.call('SADD', P .. 'nodes', node)
redis.call('HSET', P .. 'users', node, ARGV[3])
local dead = {}
local nodes = redis.call('SMEMBERS', P .. 'nodes')
for _, other in ipairs(nodes) do
  if redis.call('EXISTS', P .. 'alive:' .. other) == 0 then dead[#dead + 1] = other end
end
local users = 0
for _, count in ipairs(redis.call('HVALS', P .. 'users')) do users = users + tonumber(count) end
local answer = {nodes = #nodes - #dead, users = users, rooms = redis.call('SCARD', P .. 'rooms'), dead = dead,
                epoch = redis.call('GET', P .. 'epoch')}
if #dead == 0 then answer.dead = nil end
return cjson.encode(answer)
"""

#: ARGV: node, force (1: sweep even if alive, for a node leaving cleanly).
#: Removes a dead node's connections from every room, once: the node is
#: forgotten in the same script, so a second survivor finds nothing.
SWEEP = _COMMON + r"""
local node = ARGV[1]
if ARGV[2] ~= '1' and redis.call('EXISTS', P .. 'alive:' .. node) == 1 then return '[]' end
local results = {}
local key = P .. 'nodeconns:' .. node
local cids = redis.call('SMEMBERS', key)
table.sort(cids)
for _, cid in ipairs(cids) do
  for _, result in ipairs(leave_all(cid)) do results[#results + 1] = result end
end
redis.call('DEL', key, P .. 'alive:' .. node)
redis.call('SREM', P .. 'nodes', node)
redis.call('HDEL', P .. 'users', node)
if #results == 0 then return '[]' end
return cjson.encode(results)
"""
