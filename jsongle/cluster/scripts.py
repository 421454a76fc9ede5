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

A resumable session parked for another process to take over (see
:mod:`jsongle.cluster.sessions`) is a node of its own while it waits: its
member entries name the node ``~<pid>``, whose ``alive:~<pid>`` expires with
the resume window, and the sweep of an expired one is its ``left``.
``parked`` is the set of those nodes, ``park:<pid>`` the session (``sid``,
``ns``, ``state``, ``first`` and ``last`` offsets, ``size``) and
``parklog:<pid>`` its packets, in offset order.
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

-- Move a connection's entries in every room from one node to another (a
-- session parked, or taken over); each room's nodes see the change.
local function move(cid, from, to)
  local rids = redis.call('SMEMBERS', P .. 'conn:' .. cid)
  table.sort(rids)
  for _, rid in ipairs(rids) do
    local room = load(rid)
    if room then
      local before = copy(room.m)
      for i, m in ipairs(room.m) do
        if m[1] == cid then room.m[i] = {m[1], m[2], m[3], to} end
      end
      save(rid, room)
      notify(rid, room, before)
    end
  end
  redis.call('SREM', P .. 'nodeconns:' .. from, cid)
  if #rids > 0 then redis.call('SADD', P .. 'nodeconns:' .. to, cid) end
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
#: expired (parked sessions whose window passed among them) and the epoch: a token set once per life of the Redis data, so a
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
local ndead = #dead
for _, parked in ipairs(redis.call('SMEMBERS', P .. 'parked')) do
  if redis.call('EXISTS', P .. 'alive:' .. parked) == 0 then dead[#dead + 1] = parked end
end
local users = 0
for _, count in ipairs(redis.call('HVALS', P .. 'users')) do users = users + tonumber(count) end
local answer = {nodes = #nodes - ndead, users = users, rooms = redis.call('SCARD', P .. 'rooms'), dead = dead,
                epoch = redis.call('GET', P .. 'epoch')}
if #dead == 0 then answer.dead = nil end
return cjson.encode(answer)
"""

#: ARGV: node, force (1: sweep even if alive, for a node leaving cleanly).
#: Removes a dead node's connections from every room, once: the node is
#: forgotten in the same script, so a second survivor finds nothing. A
#: parked session's node (``~<pid>``) goes with its session; a second sweep
#: of one answers null.
SWEEP = _COMMON + r"""
local node = ARGV[1]
if ARGV[2] ~= '1' and redis.call('EXISTS', P .. 'alive:' .. node) == 1 then return '[]' end
if string.sub(node, 1, 1) == '~' and redis.call('SISMEMBER', P .. 'parked', node) == 0 then return 'null' end
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
if string.sub(node, 1, 1) == '~' then
  local pid = string.sub(node, 2)
  redis.call('DEL', P .. 'park:' .. pid, P .. 'parklog:' .. pid)
  redis.call('SREM', P .. 'parked', node)
end
if #results == 0 then return '[]' end
return cjson.encode(results)
"""

#: ARGV: pid, sid, namespace, state JSON, first offset, last offset, window
#: in ms, the node parking it, the node that asked for it ('' if none), bytes
#: kept, then the packets kept (offsets first..last). The session becomes
#: node ``~<pid>`` in its rooms, alive for the window; the parking node hears
#: ``parked`` on its channel once every earlier message to it was delivered
#: there, and so does the node that asked.
PARK = _COMMON + r"""
local pid, sid = ARGV[1], ARGV[2]
local pseudo = '~' .. pid
local key, log = P .. 'park:' .. pid, P .. 'parklog:' .. pid
local ttl = tonumber(ARGV[7])
redis.call('DEL', key, log)
redis.call('HSET', key, 'sid', sid, 'ns', ARGV[3], 'state', ARGV[4], 'first', ARGV[5], 'last', ARGV[6], 'size', ARGV[10])
for i = 11, #ARGV do redis.call('RPUSH', log, ARGV[i]) end
redis.call('PEXPIRE', key, ttl * 2)
if #ARGV > 10 then redis.call('PEXPIRE', log, ttl * 2) end
redis.call('SET', P .. 'alive:' .. pseudo, '1', 'PX', ttl)
redis.call('SADD', P .. 'parked', pseudo)
move(sid, ARGV[8], pseudo)
local marker = cjson.encode({t = 'parked', pid = pid})
redis.call('PUBLISH', P .. 'node:' .. ARGV[8], marker)
if ARGV[9] ~= '' and ARGV[9] ~= ARGV[8] then redis.call('PUBLISH', P .. 'node:' .. ARGV[9], marker) end
return 'ok'
"""

#: ARGV: pid, the offset the client has, the node taking it, namespace.
#: Answers 'none' (no such session waiting, or its window passed), 'gone'
#: (the offset is not one the log can serve) or 'ok'; on 'ok' the session is
#: the taking node's, and that node hears ``claimed`` (with the state and the
#: packets after the offset) on its channel, before any message forwarded to
#: it afterwards.
CLAIM = _COMMON + r"""
local pid, node = ARGV[1], ARGV[3]
local pseudo = '~' .. pid
local key, log = P .. 'park:' .. pid, P .. 'parklog:' .. pid
if redis.call('EXISTS', P .. 'alive:' .. pseudo) == 0 then return 'none' end
local f = redis.call('HMGET', key, 'sid', 'ns', 'state', 'first', 'last')
if not f[1] or f[2] ~= ARGV[4] then return 'none' end
local offset, first, last = tonumber(ARGV[2]), tonumber(f[4]), tonumber(f[5])
if offset > last or offset + 1 < first then return 'gone' end
local missed = redis.call('LRANGE', log, offset + 1 - first, -1)
move(f[1], pseudo, node)
redis.call('DEL', key, log, P .. 'alive:' .. pseudo, P .. 'nodeconns:' .. pseudo)
redis.call('SREM', P .. 'parked', pseudo)
local claimed = cjson.encode({t = 'claimed', pid = pid, sid = f[1], state = f[3], last = last, missed = missed})
redis.call('PUBLISH', P .. 'node:' .. node, claimed)
return 'ok'
"""

#: ARGV: pid, sid, the packet's head, the message JSON, the byte bound.
#: Keeps a message for a parked session under its next offset (a session
#: past its bound stops being alive: the next heartbeat ends it), or, once
#: taken over, forwards it to the node that holds it now.
APPEND = r"""
local P = 'jsongle:'
local pid, sid = ARGV[1], ARGV[2]
local pseudo = '~' .. pid
local key = P .. 'park:' .. pid
-- alive:~<pid> goes with park:<pid> (claimed, swept) or before it (bound passed).
if redis.call('EXISTS', P .. 'alive:' .. pseudo) == 1 then
  local n = redis.call('HINCRBY', key, 'last', 1)
  local item = ARGV[3] .. ARGV[4] .. ',"' .. n .. '"]'
  if redis.call('RPUSH', P .. 'parklog:' .. pid, item) == 1 then
    redis.call('PEXPIRE', P .. 'parklog:' .. pid, redis.call('PTTL', key))
  end
  if redis.call('HINCRBY', key, 'size', #item) > tonumber(ARGV[5]) then
    redis.call('DEL', P .. 'alive:' .. pseudo)
  end
  return 'kept'
end
for _, rid in ipairs(redis.call('SMEMBERS', P .. 'conn:' .. sid)) do
  local raw = redis.call('GET', P .. 'room:' .. rid)
  if raw then
    local room = cjson.decode(raw)
    for _, m in ipairs(room.m) do
      if m[1] == sid and string.sub(m[4], 1, 1) ~= '~' then
        redis.call('PUBLISH', P .. 'node:' .. m[4], '{"t":"msg","to":' .. cjson.encode(sid) .. ',"m":' .. ARGV[4] .. '}')
        return 'forwarded'
      end
    end
  end
end
return 'lost'
"""

#: ARGV: pid, the asking node, the client's request (JSON: its address and
#: auth, for the holder to admit it). Asks every other live node to park the
#: session ``pid`` if it holds it; answers how many nodes heard.
ASK = r"""
local P = 'jsongle:'
local payload = cjson.encode({t = 'park?', pid = ARGV[1], by = ARGV[2], request = ARGV[3]})
local heard = 0
for _, node in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
  if node ~= ARGV[2] and redis.call('EXISTS', P .. 'alive:' .. node) == 1 then
    heard = heard + redis.call('PUBLISH', P .. 'node:' .. node, payload)
  end
end
return heard
"""
