"""A Redis cache in front of the API's reads: wallets by id and the first page of each history.

It is never stale, however readers and writers interleave. Deleting an entry after each
commit would not be enough: a reader that fetched the old row before the commit could put it
back after the delete. So every entry is one Redis hash holding a *generation*, a random
token, next to the data:

* A reader that misses takes the entry's generation (making one if there is none) *before*
  it queries PostgreSQL, and may store what it read only while that generation is current.
* Each commit writes the wallets it changed and starts a new generation of every entry it
  touched, in one script. A read that began before the commit can then store nothing.
* An evicted or expired entry loses its generation with its data, so a late fill is refused
  then too; a Redis that restarted empty refuses it the same way.
* A wallet also carries its row version (every UPDATE bumps it) and the scripts never
  replace a version with an older one, so readers that fill under the same generation can
  never take a balance back.

Redis speeds reads up but is never needed to answer one. Each call has a deadline; after a
failure, reads skip Redis for a moment (a circuit breaker) and go to PostgreSQL. A change
that could not be written to Redis is remembered: this process reads those entries from
PostgreSQL and writes the change again until it lands. Every entry also expires (the TTL),
the last safety net for a process that died before it could write its changes.

Where each part lives:

* read_cache.py  ReadCache, the parts put together: what the process holds and calls.
* query.py       CachedHistoryQuery, a HistoryQuery answering from the cache what it can.
* reads.py       the read side: wallets (read together in one call per loop turn) and history
                 heads, and the fills of what was read from PostgreSQL.
* writes.py      the commit side: writes staged on the commit's pipeline, and the repair of
                 changes Redis missed.
* entries.py     what an entry holds and under which key (records are encoded by
                 persistence/codec.py, as for the feed).
* pages.py       first pages cut from a cached head.
* breaker.py     the circuit breaker.
* lua.py         the scripts; how they are sent is persistence/scripts.py.
"""

from wallet.persistence.cache.entries import decode_head, encode_head
from wallet.persistence.cache.pages import HEAD_SIZE, page_from_entry, page_from_head
from wallet.persistence.cache.query import CachedHistoryQuery
from wallet.persistence.cache.read_cache import ReadCache
from wallet.persistence.cache.reads import CacheStats
from wallet.persistence.cache.writes import MAX_UNWRITTEN

__all__ = [
    "HEAD_SIZE",
    "MAX_UNWRITTEN",
    "CacheStats",
    "CachedHistoryQuery",
    "ReadCache",
    "decode_head",
    "encode_head",
    "page_from_entry",
    "page_from_head",
]
