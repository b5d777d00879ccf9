"""The server-side scripts of the Redis store, and the key layout they share.

Keys, with prefix ``P`` and fingerprint ``f`` (the hash tag puts everything
about one fingerprint in one cluster slot):

* ``P{f}:node`` - node's occurrence counter, expires when its window closes;
* ``P{f}k``     - the claim of id ``f-k``: ``1`` claimed, ``2`` claimed and
  forwarded, ``seq * 2^20 + writer`` claimed by a writer's (a master
  process's) batch seq, forwarded once the writer's watermark in
  ``Pforwarded`` reaches seq;
* ``P{f}kf``    - the forwarded marker of an id whose claim is gone.

Beside them: ``Pepoch`` (the pair's epoch), ``Prescue`` (the rescue stream),
``Pforwarded`` (a hash: ``w:writer`` the seq up to which writer's batches are
all forwarded, ``t:writer`` when it last moved, ``last`` the id the master
forwarded last) and ``Pkept`` (present
while the data set is the one the nodes wrote to).

A master marks its own batches forwarded by raising its watermark, one write
a batch; ids claimed any other way (rescued, flushed, written back) are marked
one by one.

Marking a live claim forwarded rewrites its value and keeps its expiry, so the
marker costs no key of its own and ends with the window, as the claim does.
After the tag, a ``:`` starts a counter and digits a claim or a marker, so the
three never collide whatever the node names are. Values are integers: 1 and
2 are Redis's shared objects, and a larger integer costs 16 bytes where a
string such as ``writer:seq`` would cost 48.

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


def _script(source: str) -> Script:
    data = source.encode()
    return Script(data, hashlib.sha1(data).hexdigest())


# ARGV: prefix, mode ("e" exact / "s" suppress / "n" exact, counting the copies
# but claiming nothing, every k positive), window ms, node, want-evicted
# ("1"/"0"), the claims' value, fingerprints (newline-separated). Returns one signed occurrence
# per fingerprint (positive: won, negative: held by someone), then DBSIZE, then
# evicted_keys (-1 when not asked for).
CLAIM = _script("""#!lua flags=allow-cross-slot-keys
local prefix, exact, window, node = ARGV[1], ARGV[2] ~= 's', ARGV[3], ARGV[4]
local claim, value = ARGV[2] ~= 'n', ARGV[6]
local call = redis.call
local out, n = {}, 0
for fp in string.gmatch(ARGV[7] .. '\\n', '([^\\n]*)\\n') do
  local base = prefix .. '{' .. fp .. '}'
  local k, ttl = 1, window
  if exact then
    -- The first copy opens the window with one write; later ones count up
    -- and take the window's remaining time.
    local counter = base .. ':' .. node
    if not call('SET', counter, '1', 'NX', 'PX', window) then
      k = call('INCR', counter)
      ttl = call('PTTL', counter)
      if ttl < 0 then
        call('PEXPIRE', counter, window)
        ttl = window
      elseif ttl == 0 then
        ttl = 1
      end
    end
  end
  n = n + 1
  if not claim or call('SET', base .. k, value, 'NX', 'PX', ttl) then
    out[n] = k
  else
    out[n] = -k
  end
end
out[n + 1] = call('DBSIZE')
out[n + 2] = -1
if ARGV[5] == '1' then
  out[n + 2] = tonumber(string.match(call('INFO', 'stats'), 'evicted_keys:(%d+)'))
end
return out
""")

# ARGV: prefix, window ms, how ("c" claim, "b" bump and claim, "n" bump
# only), node, ids (newline-separated). Claims the given ids for one window
# each; a bump raises node's counter of each fingerprint to the id's
# occurrence (opening a window when none is open), so that node numbers its
# next copies after them. Returns 1/0 per id: won (0 when nothing is claimed).
CLAIM_IDS = _script("""#!lua flags=allow-cross-slot-keys
local prefix, window, node = ARGV[1], ARGV[2], ARGV[4]
local bump, claim = ARGV[3] ~= 'c', ARGV[3] ~= 'n'
local call = redis.call
local out, n = {}, 0
for id in string.gmatch(ARGV[5] .. '\\n', '([^\\n]*)\\n') do
  local fp, k = string.match(id, '^(.+)-(%d+)$')
  if not fp then
    return redis.error_reply('ERR malformed event id: ' .. id)
  end
  local base = prefix .. '{' .. fp .. '}'
  if bump then
    local counter = base .. ':' .. node
    local count = tonumber(call('GET', counter))
    if not count then
      call('SET', counter, k, 'PX', window)
    elseif tonumber(k) > count then
      call('SET', counter, k, 'KEEPTTL')
    end
  end
  n = n + 1
  if claim and call('SET', base .. k, '1', 'NX', 'PX', window) then
    out[n] = 1
  else
    out[n] = 0
  end
end
return out
""")

# ARGV: prefix, fallback ttl ms, ids (newline-separated). Marks each id's
# live claim forwarded; an id whose claim is gone gets a marker key that lives
# for the fallback ttl. Returns how many ids it marked.
MARK_FORWARDED = _script("""#!lua flags=allow-cross-slot-keys
local prefix, fallback = ARGV[1], ARGV[2]
local call = redis.call
local n = 0
for id in string.gmatch(ARGV[3] .. '\\n', '([^\\n]*)\\n') do
  local fp, k = string.match(id, '^(.+)-(%d+)$')
  if not fp then
    return redis.error_reply('ERR malformed event id: ' .. id)
  end
  local claim = prefix .. '{' .. fp .. '}' .. k
  if not call('SET', claim, '2', 'XX', 'KEEPTTL') then
    call('SET', claim .. 'f', '2', 'PX', fallback)
  end
  n = n + 1
end
return n
""")

# ARGV: prefix, watermarks (writer and seq, decimal, on alternate lines), ids
# (newline-separated). Returns 1/0 per id: is it marked forwarded (on its
# claim, by its writer's watermark, or by a marker key).
FORWARDED = _script("""#!lua flags=no-writes,allow-cross-slot-keys
local prefix = ARGV[1]
local call = redis.call
local through = {}
for writer, seq in string.gmatch(ARGV[2], '([^\\n]*)\\n([^\\n]*)\\n') do
  through[tonumber(writer)] = tonumber(seq)
end
local out, n = {}, 0
for id in string.gmatch(ARGV[3] .. '\\n', '([^\\n]*)\\n') do
  local fp, k = string.match(id, '^(.+)-(%d+)$')
  if not fp then
    return redis.error_reply('ERR malformed event id: ' .. id)
  end
  local claim = prefix .. '{' .. fp .. '}' .. k
  local value = call('GET', claim)
  n = n + 1
  if value == '2' then
    out[n] = 1
  elseif value and value ~= '1' then
    local v = tonumber(value)
    local writer = v % 1048576
    local w = through[writer]
    out[n] = (w and (v - writer) / 1048576 <= w) and 1 or 0
  else
    out[n] = call('EXISTS', claim .. 'f')
  end
end
return out
""")
