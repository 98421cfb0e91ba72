"""The cache's Lua scripts. How they are sent (by digest, whole when Redis lacks them) is
persistence/scripts.py, shared with the feed.

The scripts never look inside an entry's `data` or `page`: a wallet's version travels as an
argument of its own, so the entry format (codec.py, entries.py) can change without them.
"""

from __future__ import annotations

from wallet.persistence.scripts import Script

# KEYS wallets' entries {gen, version, data}; ARGV a fresh token, ttl in ms.
# For each wallet {1, data} when cached, else {0, the generation to fill it under}.
READ_WALLETS = Script(
    """
local found = {}
for i, key in ipairs(KEYS) do
  local entry = redis.call('HMGET', key, 'data', 'gen')
  if entry[1] then
    found[i] = {1, entry[1]}
  else
    local gen = entry[2]
    if not gen then
      gen = ARGV[1] .. ':' .. i
      redis.call('HSET', key, 'gen', gen)
      redis.call('PEXPIRE', key, ARGV[2])
    end
    found[i] = {0, gen}
  end
end
return found
"""
)

# What storing a wallet means to both scripts that store one: `data` as `version` unless the
# entry holds that version or a newer one (the compare-and-set), and the TTL renewed (ms).
_STORE_IF_NEWER = """
local function store_if_newer(key, version, data, ttl)
  local stored = tonumber(redis.call('HGET', key, 'version'))
  if stored and stored >= tonumber(version) then
    return 0
  end
  redis.call('HSET', key, 'version', version, 'data', data)
  redis.call('PEXPIRE', key, ttl)
  return 1
end
"""

# KEYS[1] a wallet's entry; ARGV generation read under, version, data, ttl in ms.
# 1 when stored; 0 when a commit came since, or the entry holds this version or a newer one.
FILL_WALLET = Script(
    _STORE_IF_NEWER
    + """
if redis.call('HGET', KEYS[1], 'gen') ~= ARGV[1] then
  return 0
end
return store_if_newer(KEYS[1], ARGV[2], ARGV[3], ARGV[4])
"""
)

# What a commit changed, in one call however many entries: a new generation for each, so that
# no read begun before the commit can store anything, then each wallet stored if newer and
# each history's page dropped.
# KEYS the changed wallets' entries, then the changed histories' hashes.
# ARGV a fresh token, ttl in ms, the number of wallets, then each wallet's version and data.
COMMIT = Script(
    _STORE_IF_NEWER
    + """
local token, ttl, wallets = ARGV[1], ARGV[2], tonumber(ARGV[3])
for i, key in ipairs(KEYS) do
  redis.call('HSET', key, 'gen', token .. ':' .. i)
  if i <= wallets then
    store_if_newer(key, ARGV[2 + 2 * i], ARGV[3 + 2 * i], ttl)
  else
    redis.call('HDEL', key, 'page')
    redis.call('PEXPIRE', key, ttl)
  end
end
return #KEYS
"""
)

# KEYS[1] a wallet's history hash {gen, page}; ARGV a fresh token, ttl in ms.
# Returns {gen, page or nil}, making a generation when there is none.
OPEN_HISTORY = Script(
    """
local entry = redis.call('HMGET', KEYS[1], 'gen', 'page')
if entry[1] then
  return entry
end
redis.call('HSET', KEYS[1], 'gen', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {ARGV[1], false}
"""
)

# KEYS[1] a wallet's history hash; ARGV the generation the page was read under, page, ttl.
FILL_HISTORY = Script(
    """
if redis.call('HGET', KEYS[1], 'gen') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'page', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
)

SCRIPTS = (
    READ_WALLETS,
    FILL_WALLET,
    COMMIT,
    OPEN_HISTORY,
    FILL_HISTORY,
)
