"""The server-side scripts of the Redis store, and the key layout they share.

Keys, with prefix ``P`` and fingerprint ``f`` (the hash tag puts everything
about one fingerprint in one cluster slot):

* ``P{f}w``  - the window of ``f``: a hash of per-node occurrence counters
  and ``t``, the window's tag (its opening time on the server, in ms, hex).
  Whichever node numbers the first copy opens it (with a TTL of one window),
  so both nodes number inside the same window and it closes for both at once;
* ``P{f}t-k`` - the claim of id ``f-t-k`` (occurrence k of window t), which
  lives one window past the window's end:
  ``0`` forwarded; ``e`` (below 2^20) claimed one by one by a master of
  epoch ``e``; ``seq * 2^20 + e`` claimed by the batch ``seq`` of the master
  of epoch ``e``, forwarded once that epoch's watermark in ``Pforwarded``
  reaches seq;
* ``P{f}t-kf`` - the forwarded marker of an id whose claim is gone;
* ``P{f}n<token>`` - the numbers a call with that token gave (f: its first
  fingerprint), kept one window, so that repeating the call after its reply
  was lost gives the same ids (see `CLAIM`).

Beside them: ``P{pair}epoch`` (the highest epoch any writer has shown this
server: the fencing token), ``P{pair}master`` (the node that took that epoch;
one hash tag keeps the two in one slot), ``Prescue``
(the rescue stream), ``Pforwarded`` (a hash: ``w:e`` the seq up to which the
batches of epoch ``e`` are all forwarded, ``t:e`` when it last moved, ``last``
the id the master forwarded last) and ``Pkept`` (present while the data set
is the one the nodes wrote to).

Fencing: every script that writes takes the writer's epoch. A lower epoch
than ``P{pair}epoch`` is refused with ``FENCED <epoch>`` and nothing is written; a
higher one raises ``P{pair}epoch``, so a stale master is refused from the first
write of its successor on. Epoch ``-1`` skips the check (a shared Redis
Cluster, whose one epoch key cannot be read from every node's scripts).

Each master term has its own epoch, so the epoch names the process that
claimed a batch: a claim of a lower epoch than the taker's, not forwarded, was
left by a master that is gone or fenced, and a rescue takes it over.

After the tag, ``w`` is the window and ``t-k`` a claim or a marker, so they
never collide. Values are integers: 0 and small epochs are Redis's shared
objects, and a larger integer costs 16 bytes where a string would cost 48.

Fingerprints and ids travel as one newline-separated argument rather than
one argument each: packing a thousand arguments costs the client more than the
script spends splitting them.

The scripts declare no keys: a Redis Cluster node rejects declared keys from
different slots even with ``allow-cross-slot-keys``, but runs a script that
touches several of its own slots when the flag is set. The client therefore
sends each node only fingerprints whose slots that node serves.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple


class Script(NamedTuple):
    """Lua source and the SHA1 that EVALSHA calls it by."""

    source: bytes
    sha: str


# Refuses a lower epoch than the server's (returns the server's), raises the
# server's to a higher one; -1 checks nothing.
_FENCE = """
local function fenced(prefix, mine)
  mine = tonumber(mine)
  if mine < 0 then return nil end
  local key = prefix .. '{pair}epoch'
  local stored = tonumber(redis.call('GET', key) or '0')
  if mine < stored then return redis.error_reply('FENCED ' .. stored) end
  if mine > stored then redis.call('SET', key, mine) end
  return nil
end
"""

# `state(claim, marks)`: 0 forwarded, else the claim's epoch (nil: no claim).
# `marks` maps epoch -> watermark seq.
_STATE = """
local function state(claim, marks)
  local value = redis.call('GET', claim)
  if not value then
    if redis.call('EXISTS', claim .. 'f') == 1 then return 0 end
    return nil
  end
  local v = tonumber(value)
  if v < 1048576 then return v end
  local epoch = v % 1048576
  local w = marks[epoch]
  if w and (v - epoch) / 1048576 <= w then return 0 end
  return epoch
end
local function watermarks(text)
  local marks = {}
  for epoch, seq in string.gmatch(text, '([^\\n]*)\\n([^\\n]*)\\n') do
    marks[tonumber(epoch)] = tonumber(seq)
  end
  return marks
end
"""

_SPLIT_ID = """
local function split_id(id)
  local fp, t, k = string.match(id, '^([^-]+)-(%x+)-(%d+)$')
  if not fp then error('malformed event id: ' .. id) end
  return fp, t, k
end
"""


def _script(source: str, *parts: str, writes: bool = True) -> Script:
    flags = "allow-cross-slot-keys" if writes else "no-writes,allow-cross-slot-keys"
    data = (f"#!lua flags={flags}\n" + "".join(parts) + source).encode()
    return Script(data, hashlib.sha1(data).hexdigest())


# ARGV: prefix, mode ("e" exact / "s" suppress; "n" and "u" the same, numbering
# the copies but claiming nothing), window ms, node, want-evicted ("1"/"0"), the claims'
# value, epoch, the call's token ("" for none), fingerprints (newline-separated).
# Returns per fingerprint its signed occurrence (positive: won, negative: held by
# someone) and its window's tag, then DBSIZE, then evicted_keys (-1 when not asked for).
#
# A token makes the numbering idempotent: the first call with it keeps its
# numbers for one window under ``P{f}n<token>`` (f: the first fingerprint, so
# the key sits on the cluster node that serves the call), and a repeat of the
# call (its reply was lost) gets the same occurrences instead of counting the
# copies again. A repeated claim wins what it won before: a claim still held by
# a batch of the same epoch is taken over with the new value.
CLAIM = _script("""
local prefix, window, node, how = ARGV[1], ARGV[3], ARGV[4], ARGV[2]
local exact, claim, value = how == 'e' or how == 'n', how == 'e' or how == 's', ARGV[6]
local refused = fenced(prefix, ARGV[7])
if refused then return refused end
local call = redis.call
local memo, replay, numbers = nil, nil, {}
if ARGV[8] ~= '' then
  memo = prefix .. '{' .. string.match(ARGV[9], '^[^\\n]*') .. '}n' .. ARGV[8]
  local kept = call('GET', memo)
  if kept then replay = string.gmatch(kept, '(%d+) (%x+),') end
end
local function mine(held)
  local v, want = tonumber(held), tonumber(value)
  return v and v >= 1048576 and want >= 1048576 and v % 1048576 == want % 1048576
end
local now = call('TIME')
local opened = string.format('%x', now[1] * 1000 + math.floor(now[2] / 1000))
local out, n = {}, 0
for fp in string.gmatch(ARGV[9] .. '\\n', '([^\\n]*)\\n') do
  local base = prefix .. '{' .. fp .. '}'
  local win = base .. 'w'
  local k, ttl, tag = 1, window, nil
  if replay then
    k, tag = replay()
    if not k then error('the token ' .. ARGV[8] .. ' numbered another batch') end
    k = tonumber(k)
  else
    -- The first copy on either node opens the window; every copy counts in it
    -- and takes the window's remaining time.
    if exact then k = call('HINCRBY', win, node, 1) end
    ttl = call('PTTL', win)
    if ttl < 0 then
      call('HSET', win, 't', opened)
      call('PEXPIRE', win, window)
      ttl, tag = window, opened
    else
      tag = call('HGET', win, 't')
      if ttl == 0 then ttl = 1 end
    end
    if memo then numbers[#numbers + 1] = k .. ' ' .. tag .. ',' end
  end
  n = n + 2
  -- A claim outlives its window by one window: a standby may ask about an id
  -- numbered at the window's very end up to a window later (its pending bound).
  local key = base .. tag .. '-' .. k
  if not claim or call('SET', key, value, 'NX', 'PX', ttl + window) then
    out[n - 1] = k
  elseif replay and mine(call('GET', key)) then
    call('SET', key, value, 'XX', 'KEEPTTL')
    out[n - 1] = k
  else
    out[n - 1] = -k
  end
  out[n] = tag
end
if memo and not replay then call('SET', memo, table.concat(numbers), 'PX', window) end
out[n + 1] = call('DBSIZE')
out[n + 2] = -1
if ARGV[5] == '1' then
  out[n + 2] = tonumber(string.match(call('INFO', 'stats'), 'evicted_keys:(%d+)'))
end
return out
""", _FENCE)

# ARGV: prefix, window ms, how ("c" claim, "b" bump and claim, "n" bump
# only), node, epoch, fence epoch, ids (newline-separated). Claims the given
# ids (value: the epoch) for one window each; a bump raises node's counter of
# each fingerprint to the id's occurrence, so that node numbers its next
# copies after them: in the id's window when it is the open one, opening it
# when none is open. Returns 1/0 per id: won (0 when nothing is claimed).
CLAIM_IDS = _script("""
local prefix, window, node, epoch = ARGV[1], ARGV[2], ARGV[4], ARGV[5]
local bump, claim = ARGV[3] ~= 'c', ARGV[3] ~= 'n'
local refused = fenced(prefix, ARGV[6])
if refused then return refused end
local call = redis.call
local out, n = {}, 0
for id in string.gmatch(ARGV[7] .. '\\n', '([^\\n]*)\\n') do
  local fp, t, k = split_id(id)
  local base = prefix .. '{' .. fp .. '}'
  if bump then
    local win = base .. 'w'
    local open = call('HGET', win, 't')
    if not open then
      call('HSET', win, 't', t, node, k)
      call('PEXPIRE', win, window)
    elseif open == t and tonumber(k) > tonumber(call('HGET', win, node) or '0') then
      call('HSET', win, node, k)
    end
  end
  n = n + 1
  if claim and call('SET', base .. t .. '-' .. k, epoch, 'NX', 'PX', window) then
    out[n] = 1
  else
    out[n] = 0
  end
end
return out
""", _FENCE, _SPLIT_ID)

# ARGV: prefix, window ms, epoch, fence epoch, watermarks (epoch and seq,
# decimal, on alternate lines), ids (newline-separated). A master of `epoch` takes ids
# handed to it (rescued, or from a spool): an id nobody claimed is claimed;
# one claimed by a lower epoch and not forwarded is taken over (its master is
# gone or fenced). Returns per id: 1 taken, 0 forwarded already, 2 claimed by a
# batch of this epoch and not forwarded yet (in this master's own hands), 3
# taken (or claimed by id) at this epoch and not forwarded yet: in this
# master's hands, or taken by a call whose reply it never got.
TAKE_IDS = _script("""
local prefix, window, epoch = ARGV[1], ARGV[2], tonumber(ARGV[3])
local refused = fenced(prefix, ARGV[4])
if refused then return refused end
local marks = watermarks(ARGV[5])
local call = redis.call
local out, n = {}, 0
for id in string.gmatch(ARGV[6] .. '\\n', '([^\\n]*)\\n') do
  local fp, t, k = split_id(id)
  local claim = prefix .. '{' .. fp .. '}' .. t .. '-' .. k
  local held = state(claim, marks)
  n = n + 1
  if held == 0 then
    out[n] = 0
  elseif held == nil then
    call('SET', claim, epoch, 'PX', window)
    out[n] = 1
  elseif held < epoch then
    call('SET', claim, epoch, 'KEEPTTL')
    out[n] = 1
  elseif tonumber(call('GET', claim)) == epoch then
    out[n] = 3
  else
    out[n] = 2
  end
end
return out
""", _FENCE, _STATE, _SPLIT_ID)

# ARGV: prefix, fallback ttl ms, epoch, ids (newline-separated). Marks each
# id's live claim forwarded; an id whose claim is gone gets a marker key that
# lives for the fallback ttl. Returns how many ids it marked.
MARK_FORWARDED = _script("""
local prefix, fallback = ARGV[1], ARGV[2]
local refused = fenced(prefix, ARGV[3])
if refused then return refused end
local call = redis.call
local n = 0
for id in string.gmatch(ARGV[4] .. '\\n', '([^\\n]*)\\n') do
  local fp, t, k = split_id(id)
  local claim = prefix .. '{' .. fp .. '}' .. t .. '-' .. k
  if not call('SET', claim, '0', 'XX', 'KEEPTTL') then
    call('SET', claim .. 'f', '0', 'PX', fallback)
  end
  n = n + 1
end
return n
""", _FENCE, _SPLIT_ID)

# ARGV: prefix, epoch, fence epoch, seq, now (unix s), last id. Raises the
# epoch's watermark to seq (never lowers it) and publishes the last id forwarded.
MARK_THROUGH = _script("""
local prefix, epoch, seq = ARGV[1], ARGV[2], tonumber(ARGV[4])
local refused = fenced(prefix, ARGV[3])
if refused then return refused end
local key = prefix .. 'forwarded'
local current = tonumber(redis.call('HGET', key, 'w:' .. epoch) or '0')
if seq > current then
  redis.call('HSET', key, 'w:' .. epoch, seq, 't:' .. epoch, ARGV[5], 'last', ARGV[6])
end
return current
""", _FENCE)

# ARGV: prefix, watermarks (epoch and seq, decimal, on alternate lines), ids
# (newline-separated). Returns 1/0 per id: is it marked forwarded (on its
# claim, by its epoch's watermark, or by a marker key).
FORWARDED = _script("""
local prefix = ARGV[1]
local marks = watermarks(ARGV[2])
local out, n = {}, 0
for id in string.gmatch(ARGV[3] .. '\\n', '([^\\n]*)\\n') do
  local fp, t, k = split_id(id)
  n = n + 1
  out[n] = state(prefix .. '{' .. fp .. '}' .. t .. '-' .. k, marks) == 0 and 1 or 0
end
return out
""", _STATE, _SPLIT_ID, writes=False)

# ARGV: prefix, epoch, most entries, payloads... Appends to the rescue stream
# while it holds fewer than `most` entries (entries leave it only when a master
# acknowledges them, never by trimming). Returns how many it added.
RESCUE_ADD = _script("""
local prefix = ARGV[1]
local refused = fenced(prefix, ARGV[2])
if refused then return refused end
local key = prefix .. 'rescue'
local room = tonumber(ARGV[3]) - redis.call('XLEN', key)
local added = 0
for i = 4, #ARGV do
  if added >= room then break end
  redis.call('XADD', key, '*', 'e', ARGV[i])
  added = added + 1
end
return added
""", _FENCE)

# ARGV: prefix, epoch, node. Raises the server's epoch to `epoch` (never
# lowers it) and, when it rose, records `node` as the master that took it.
# Returns the server's epoch afterwards.
RAISE_EPOCH = _script("""
local prefix, epoch = ARGV[1], tonumber(ARGV[2])
local key = prefix .. '{pair}epoch'
local stored = tonumber(redis.call('GET', key) or '0')
if epoch > stored then
  redis.call('SET', key, epoch)
  redis.call('SET', prefix .. '{pair}master', ARGV[3])
  return epoch
end
return stored
""")
