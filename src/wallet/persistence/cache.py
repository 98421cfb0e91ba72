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
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from wallet.domain.model import (
    MAX_PAGE_SIZE,
    HistoryRequest,
    Page,
    Transaction,
    Wallet,
)
from wallet.domain.money import Currency, Money
from wallet.domain.ports import HistoryQuery
from wallet.persistence.codec import (
    datetime_of,
    text_of,
    transaction_data,
    transaction_of,
    when_text,
)
from wallet.persistence.redis_commits import REDIS_FAILURES, RedisCommitListener
from wallet.persistence.scripts import Script, ScriptCall, load, rerun_missing, run_calls

log = logging.getLogger(__name__)

# Each script runs by its digest (scripts.py), not with its body sent along on every call.

# KEYS wallets' entries {gen, version, data}; ARGV a fresh token, ttl in ms.
# For each wallet {1, data} when cached, else {0, the generation to fill it under}.
_READ_WALLETS = Script(
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
_FILL_WALLET = Script(
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
_COMMIT = Script(
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
_OPEN_HISTORY = Script(
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
_FILL_HISTORY = Script(
    """
if redis.call('HGET', KEYS[1], 'gen') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'page', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
)

_SCRIPTS = (
    _READ_WALLETS,
    _FILL_WALLET,
    _COMMIT,
    _OPEN_HISTORY,
    _FILL_HISTORY,
)

# The cached head of a history: the newest transactions, one more than a page can hold so
# that a full first page knows whether there is a next one.
HEAD_SIZE = MAX_PAGE_SIZE + 1

# A process that lost track of more changes than this stops trusting the cache at all and,
# once Redis answers, empties it.
MAX_UNWRITTEN = 10_000


@dataclass(slots=True)
class CacheStats:
    """Counts since the process started, for the metrics endpoint to read."""

    hits: int = 0
    misses: int = 0
    # Reads sent to PostgreSQL without asking Redis: it had just failed, or this process
    # holds a change of the entry that Redis has not taken yet.
    bypassed: int = 0
    # Fills refused: a commit came after the reader began, or another reader had already
    # stored that version or a newer one. This is the race that generations and versions stop.
    fills_refused: int = 0


class _Unanswered(Exception):
    """Redis gave no answer to a batch of reads (its failure is already counted)."""


class _Breaker:
    """After a Redis failure, reads leave Redis alone for `cooldown` seconds."""

    def __init__(self, cooldown: float) -> None:
        self._cooldown = cooldown
        self._closed_at = 0.0

    def allows(self) -> bool:
        return time.monotonic() >= self._closed_at

    def trip(self) -> None:
        self._closed_at = time.monotonic() + self._cooldown

    def reset(self) -> None:
        self._closed_at = 0.0


def encode_wallet(wallet: Wallet) -> str:
    data = (
        wallet.version,
        wallet.currency.code,
        wallet.balance.minor,
        when_text(wallet.created_at),
        when_text(wallet.updated_at),
    )
    return json.dumps(data, separators=(",", ":"))


@functools.lru_cache(maxsize=16_384)
def _decoded_wallet(wallet_id: UUID, entry: bytes) -> Wallet:
    # Keyed by the exact bytes, which hold the version and every field: never stale. Hot
    # wallets are read far more often than they change, and decoding costs more than the
    # rest of the cache's work on a hit.
    return decode_wallet(wallet_id, entry)


def decode_wallet(wallet_id: UUID, entry: bytes | str) -> Wallet:
    version, code, balance, created_at, updated_at = json.loads(entry)
    currency = Currency.of(code)
    return Wallet(
        id=wallet_id,
        currency=currency,
        balance=Money(balance, currency),
        version=version,
        created_at=datetime_of(created_at),
        updated_at=datetime_of(updated_at),
    )


def encode_head(head: Page) -> str:
    """The newest transactions of a wallet, and whether they are all it has."""
    rows = [transaction_data(t) for t in head.transactions]
    return json.dumps({"complete": not head.has_next, "rows": rows}, separators=(",", ":"))


def decode_head(entry: bytes | str) -> tuple[list[Transaction], bool]:
    data = json.loads(entry)
    return [transaction_of(row) for row in data["rows"]], bool(data["complete"])


_Item = TypeVar("_Item")


def page_from_head(head: list[Transaction], complete: bool, request: HistoryRequest) -> Page | None:
    """The first page asked for, cut from the cached head; None when the head cannot tell.

    The head holds every transaction newer than its oldest one, so the newest that match a
    filter are in it too. It answers unless the filter leaves no more than a page in it and
    older transactions, not cached, might match as well.
    """
    return _cut(head, complete, request, lambda t: (t.type.value, t.status.value), lambda t: t)


def page_from_entry(entry: bytes | str, request: HistoryRequest) -> Page | None:
    """page_from_head on the head as cached, making only the page's transactions of it.

    A head holds 101 transactions, and one query may read a hundred pages that arrive in the
    same turn of the event loop: making all of each held the loop for 150 ms.
    """
    data = json.loads(entry)
    rows: list[list[Any]] = data["rows"]
    return _cut(rows, bool(data["complete"]), request, lambda row: (row[1], row[2]), transaction_of)


def _cut(
    head: list[_Item],
    complete: bool,
    request: HistoryRequest,
    kind_of: Callable[[_Item], tuple[str, str]],
    made: Callable[[_Item], Transaction],
) -> Page | None:
    types = {t.value for t in request.types} if request.types is not None else None
    statuses = {s.value for s in request.statuses} if request.statuses is not None else None
    matches: list[_Item] = []
    for item in head:
        kind, status = kind_of(item)
        if (types is None or kind in types) and (statuses is None or status in statuses):
            matches.append(item)
            if len(matches) > request.limit:
                page = [made(match) for match in matches[: request.limit]]
                return Page(page, has_next=True, has_previous=False)
    if complete:
        return Page([made(match) for match in matches], has_next=False, has_previous=False)
    return None


def _is_first_page(request: HistoryRequest) -> bool:
    return (
        request.after is None
        and request.before is None
        and not request.backward
        and request.limit <= MAX_PAGE_SIZE
    )


class ReadCache:
    """The cache's state in one process: its Redis, its counters, and what Redis missed.

    It keeps in step with this process's commits by staging its writes on the commit's Redis
    pipeline (`stage`, or `on_commit` on a pipeline of its own); `reads(inner)` wraps a
    HistoryQuery so that its reads go through the cache.
    """

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        ttl: float,
        timeout: float,
        cooldown: float = 1.0,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl_ms = max(1, int(ttl * 1000))
        self._timeout = timeout
        self._breaker = _Breaker(cooldown)
        self.wallet_stats = CacheStats()
        self.history_stats = CacheStats()
        self.redis_errors = 0
        # Changes that Redis has not taken: the newest wallet rows, and the wallets whose
        # history changed, each with a sequence number so a retry never drops a newer one.
        self._unwritten_wallets: dict[UUID, Wallet] = {}
        self._unwritten_histories: dict[UUID, int] = {}
        self._sequence = 0
        self._lost_track = False
        self._repairer: asyncio.Task[None] | None = None
        # Wallet reads waiting for the next Redis call, and the calls under way.
        self._asked: list[tuple[list[UUID], asyncio.Future[list[Wallet | str]]]] = []
        self._sending: set[asyncio.Task[None]] = set()
        self._alone = RedisCommitListener(redis, [self], timeout=timeout)

    # -- keys ---------------------------------------------------------------------------

    def wallet_key(self, wallet_id: UUID) -> str:
        return f"{self._prefix}:wallet:{wallet_id}"

    def history_key(self, wallet_id: UUID) -> str:
        return f"{self._prefix}:history:{wallet_id}"

    # -- what readers ask ---------------------------------------------------------------

    def reads(self, inner: HistoryQuery) -> HistoryQuery:
        return CachedHistoryQuery(inner, self)

    def _trusts_redis(self) -> bool:
        return self._breaker.allows() and not self._lost_track

    def _failed(self, what: str, error: BaseException) -> None:
        self.redis_errors += 1
        self._breaker.trip()
        log.warning("redis failed while %s (%r); reading from PostgreSQL", what, error)

    async def open_wallets(
        self, wallet_ids: Sequence[UUID]
    ) -> tuple[dict[UUID, Wallet], dict[UUID, str]] | None:
        """The cached wallets among these, and the generation to fill each other one under.

        A wallet in neither is to be read from PostgreSQL and not stored. None when Redis
        cannot be asked.
        """
        unwritten = self._unwritten_wallets
        ids = [i for i in wallet_ids if i not in unwritten] if unwritten else list(wallet_ids)
        self.wallet_stats.bypassed += len(wallet_ids) - len(ids)
        if not ids:
            return {}, {}
        if not self._trusts_redis():
            self.wallet_stats.bypassed += len(ids)
            return None
        try:
            entries = await self._read_together(ids)
        except _Unanswered:
            self.wallet_stats.bypassed += len(ids)
            return None
        found: dict[UUID, Wallet] = {}
        generations: dict[UUID, str] = {}
        for wallet_id, entry in zip(ids, entries, strict=True):
            if isinstance(entry, Wallet):
                found[wallet_id] = entry
            else:
                generations[wallet_id] = entry
        self.wallet_stats.hits += len(found)
        self.wallet_stats.misses += len(generations)
        return found, generations

    async def _read_together(self, wallet_ids: list[UUID]) -> list[Wallet | str]:
        """Each wallet as cached, or the generation to fill it under; read in one Redis call
        with those of every other request that asks during the same turn of the event loop.

        Under load many requests want a wallet at the same moment: one round trip for all
        of them costs one send and one receive instead of one each. A request only ever
        joins a call not yet sent, so what it reads is never older than its asking.
        """
        loop = asyncio.get_running_loop()
        asked: asyncio.Future[list[Wallet | str]] = loop.create_future()
        self._asked.append((wallet_ids, asked))
        if len(self._asked) == 1:
            # At the loop's next turn, once every request running in this one has asked.
            loop.call_soon(self._send_asked)
        return await asked

    def _send_asked(self) -> None:
        batch, self._asked = self._asked, []
        sending = asyncio.create_task(self._send_batch(batch), name="read-cache-reads")
        self._sending.add(sending)
        sending.add_done_callback(self._sending.discard)

    async def _send_batch(
        self, batch: list[tuple[list[UUID], asyncio.Future[list[Wallet | str]]]]
    ) -> None:
        keys = list(dict.fromkeys(i for ids, _ in batch for i in ids))
        try:
            async with asyncio.timeout(self._timeout):
                entries = await _READ_WALLETS.run(
                    self._redis,
                    [self.wallet_key(k) for k in keys],
                    (uuid.uuid4().hex, self._ttl_ms),
                )
            # Decoded once for all the requests that asked; readers never change a Wallet.
            by_id: dict[UUID, Wallet | str] = {
                wallet_id: _decoded_wallet(wallet_id, value) if cached else text_of(value)
                for wallet_id, (cached, value) in zip(keys, entries, strict=True)
            }
        except asyncio.CancelledError:
            _answer(batch, None)
            raise
        except Exception as error:
            if isinstance(error, REDIS_FAILURES):
                self._failed("reading wallets", error)
            else:
                log.exception("could not read wallets from the cache")
            _answer(batch, None)
            return
        _answer(batch, by_id)

    async def fill_wallets(self, fills: Sequence[tuple[str, Wallet]]) -> None:
        """Store rows read from PostgreSQL, each under the generation taken before reading."""
        fills = [(g, w) for g, w in fills if w.id not in self._unwritten_wallets]
        if not fills or not self._trusts_redis():
            return
        calls = [
            ScriptCall(
                _FILL_WALLET,
                (self.wallet_key(wallet.id),),
                (generation, wallet.version, encode_wallet(wallet), self._ttl_ms),
            )
            for generation, wallet in fills
        ]
        try:
            async with asyncio.timeout(self._timeout):
                stored = await run_calls(self._redis, calls)
        except REDIS_FAILURES as error:
            self._failed("filling wallets", error)
            return
        failure = next((r for r in stored if isinstance(r, Exception)), None)
        if failure is not None:
            self._failed("filling wallets", failure)
        self.wallet_stats.fills_refused += stored.count(0)

    async def open_history(self, wallet_id: UUID) -> tuple[str, bytes | None] | None:
        """The wallet's history generation and the page cached under it, if any.

        None when Redis cannot be asked, or when this process changed the history and has
        not yet told Redis.
        """
        if wallet_id in self._unwritten_histories or not self._trusts_redis():
            self.history_stats.bypassed += 1
            return None
        try:
            async with asyncio.timeout(self._timeout):
                generation, page = await _OPEN_HISTORY.run(
                    self._redis, [self.history_key(wallet_id)], (uuid.uuid4().hex, self._ttl_ms)
                )
        except REDIS_FAILURES as error:
            self._failed("reading a history", error)
            self.history_stats.bypassed += 1
            return None
        return text_of(generation), page

    async def fill_history(self, wallet_id: UUID, generation: str, head: Page) -> None:
        """Store the head read under `generation`, unless a commit has replaced it since."""
        if wallet_id in self._unwritten_histories or not self._trusts_redis():
            return
        try:
            async with asyncio.timeout(self._timeout):
                stored = await _FILL_HISTORY.run(
                    self._redis,
                    [self.history_key(wallet_id)],
                    (generation, encode_head(head), self._ttl_ms),
                )
        except REDIS_FAILURES as error:
            self._failed("filling a history", error)
            return
        if not stored:
            self.history_stats.fills_refused += 1

    # -- what committers tell -----------------------------------------------------------

    async def on_commit(
        self, wallets: Sequence[Wallet], transactions: Sequence[Transaction]
    ) -> None:
        """A CommitListener for the cache alone, in a round trip of its own.

        Processes stage the cache on the RedisCommitListener they share with the feed
        instead (resources.py): one round trip after each commit for both.
        """
        await self._alone(wallets, transactions)

    def stage(
        self, pipe: Pipeline, wallets: Sequence[Wallet], transactions: Sequence[Transaction]
    ) -> _CommitWrites | None:
        """Stage the committed wallets' writes and a new generation of each changed history.

        Staged even while reads skip Redis: a change left out would be stale for every other
        process.
        """
        histories = sorted({i for t in transactions for i in t.wallet_ids})
        if not wallets and not histories:
            return None
        try:
            call = self._commit_call(wallets, histories)
        except Exception:
            log.exception("could not update the read cache after a commit")
            self._remember(wallets, histories)
            return None
        call.stage(pipe)
        return _CommitWrites(self, wallets, histories, call)

    def _commit_call(self, wallets: Sequence[Wallet], histories: Sequence[UUID]) -> ScriptCall:
        """The writes of these wallets and new generations of these histories, in one call."""
        keys = [self.wallet_key(w.id) for w in wallets] + [self.history_key(h) for h in histories]
        args: list[str | int] = [uuid.uuid4().hex, self._ttl_ms, len(wallets)]
        for wallet in wallets:
            args += (wallet.version, encode_wallet(wallet))
        return ScriptCall(_COMMIT, tuple(keys), tuple(args))

    async def _committed(
        self,
        wallets: Sequence[Wallet],
        histories: Sequence[UUID],
        call: ScriptCall,
        replies: Sequence[Any],
    ) -> None:
        """Remember the whole commit when its call failed: Redis may have taken any part of it,
        and writing again what it took is safe."""
        try:
            async with asyncio.timeout(self._timeout):
                (reply,) = await rerun_missing(self._redis, [call], replies)
        except Exception as error:
            reply = error
        if isinstance(reply, Exception):
            self._uncommitted(wallets, histories, reply)

    def _uncommitted(
        self, wallets: Sequence[Wallet], histories: Sequence[UUID], error: Exception
    ) -> None:
        self._lost("writing committed changes", error)
        self._remember(wallets, histories)

    def _lost(self, what: str, error: Exception) -> None:
        if isinstance(error, REDIS_FAILURES):
            self._failed(what, error)
        else:
            log.error("could not update the read cache while %s", what, exc_info=error)

    def _remember(self, wallets: Sequence[Wallet], histories: Sequence[UUID]) -> None:
        for wallet in wallets:
            known = self._unwritten_wallets.get(wallet.id)
            if known is None or known.version < wallet.version:
                self._unwritten_wallets[wallet.id] = wallet
        for wallet_id in histories:
            self._sequence += 1
            self._unwritten_histories[wallet_id] = self._sequence
        if self.unwritten > MAX_UNWRITTEN:
            log.error("lost track of the changes Redis missed; the cache will be emptied")
            self._lost_track = True
            self._unwritten_wallets.clear()
            self._unwritten_histories.clear()
        if self._repairer is None or self._repairer.done():
            self._repairer = asyncio.create_task(self._repair(), name="read-cache-repair")

    @property
    def unwritten(self) -> int:
        """Changes this process made that Redis has not taken yet (for the metrics)."""
        return len(self._unwritten_wallets) + len(self._unwritten_histories)

    def _has_unwritten(self) -> bool:
        return bool(self._lost_track or self.unwritten)

    async def _repair(self) -> None:
        # Writing again is always safe: the scripts keep the newer version and a fresh
        # generation only ever discards a page.
        delay = 0.1
        while self._has_unwritten():
            await asyncio.sleep(delay)
            try:
                async with asyncio.timeout(max(self._timeout, 5.0)):
                    await self._write_unwritten()
            except REDIS_FAILURES:
                self.redis_errors += 1
                delay = min(delay * 2, 5.0)
                continue
            self._breaker.reset()
            log.info("the read cache has caught up with the changes Redis missed")

    async def _write_unwritten(self) -> None:
        if self._lost_track:
            await self.clear()
            self._lost_track = False
            return
        wallets = dict(self._unwritten_wallets)
        histories = dict(self._unwritten_histories)
        # A call per change, not one for all: an entry Redis refuses (a key in the way) then
        # holds back no other.
        calls = [self._commit_call([wallet], []) for wallet in wallets.values()] + [
            self._commit_call([], [wallet_id]) for wallet_id in histories
        ]
        replies = await run_calls(self._redis, calls)
        wallet_replies, history_replies = replies[: len(wallets)], replies[len(wallets) :]
        for (wallet_id, wallet), reply in zip(wallets.items(), wallet_replies, strict=True):
            if (
                not isinstance(reply, Exception)
                and self._unwritten_wallets.get(wallet_id) is wallet
            ):
                del self._unwritten_wallets[wallet_id]
        for (wallet_id, sequence), reply in zip(histories.items(), history_replies, strict=True):
            if (
                not isinstance(reply, Exception)
                and self._unwritten_histories.get(wallet_id) == sequence
            ):
                del self._unwritten_histories[wallet_id]
        failure = next((r for r in replies if isinstance(r, Exception)), None)
        if failure is not None:
            raise failure

    async def load_scripts(self) -> None:
        """Put the cache's scripts in Redis, so that no first call needs to send one again.

        When Redis cannot take them now, each is sent when it is first missed.
        """
        try:
            async with asyncio.timeout(self._timeout):
                await load(self._redis, _SCRIPTS)
        except REDIS_FAILURES as error:
            # Debug only: the process's readiness line names Redis and why it is away.
            log.debug("could not load the read cache's scripts into redis (%r)", error)

    async def clear(self) -> None:
        """Delete every entry under this cache's prefix."""
        async for keys in _batches(self._redis.scan_iter(match=f"{self._prefix}:*", count=500)):
            await self._redis.unlink(*keys)

    async def close(self) -> None:
        for task in (self._repairer, *self._sending):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def _batches(keys: Any, size: int = 500) -> Any:
    batch: list[bytes] = []
    async for key in keys:
        batch.append(key)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _answer(
    batch: list[tuple[list[UUID], asyncio.Future[list[Wallet | str]]]],
    by_id: dict[UUID, Wallet | str] | None,
) -> None:
    for ids, asked in batch:
        if asked.done():  # its request was cancelled
            continue
        if by_id is None:
            asked.set_exception(_Unanswered())
        else:
            asked.set_result([by_id[i] for i in ids])


class _CommitWrites:
    """A commit's writes staged on a pipeline: what the cache does with their replies."""

    def __init__(
        self,
        cache: ReadCache,
        wallets: Sequence[Wallet],
        histories: Sequence[UUID],
        call: ScriptCall,
    ) -> None:
        self._cache = cache
        self._wallets = wallets
        self._histories = histories
        self._call = call

    async def answered(self, replies: Sequence[Any]) -> None:
        await self._cache._committed(self._wallets, self._histories, self._call, replies)

    def unanswered(self, error: Exception) -> None:
        self._cache._uncommitted(self._wallets, self._histories, error)


class CachedHistoryQuery:
    """A HistoryQuery that answers from the cache what it can and asks `inner` the rest.

    The wallets it returns may be shared by concurrent requests: they are read, never changed.
    """

    def __init__(self, inner: HistoryQuery, cache: ReadCache) -> None:
        self._inner = inner
        self._cache = cache

    async def wallets(self, wallet_ids: Sequence[UUID]) -> list[Wallet | None]:
        opened = await self._cache.open_wallets(wallet_ids)
        if opened is None:
            return await self._inner.wallets(wallet_ids)
        found, generations = opened
        if len(found) == len(wallet_ids):
            return [found[i] for i in wallet_ids]
        missing = [i for i in wallet_ids if i not in found]
        if missing:
            read = await self._inner.wallets(missing)
            fills = []
            for wallet_id, wallet in zip(missing, read, strict=True):
                if wallet is None:
                    continue
                found[wallet_id] = wallet
                if wallet_id in generations:
                    fills.append((generations[wallet_id], wallet))
            await self._cache.fill_wallets(fills)
        return [found.get(i) for i in wallet_ids]

    async def transactions(self, transaction_ids: Sequence[UUID]) -> list[Transaction | None]:
        return await self._inner.transactions(transaction_ids)

    async def history(self, request: HistoryRequest) -> Page:
        if not _is_first_page(request):
            return await self._inner.history(request)
        opened = await self._cache.open_history(request.wallet_id)
        if opened is None:
            return await self._inner.history(request)
        stats = self._cache.history_stats
        generation, entry = opened
        if entry is not None:
            page = page_from_entry(entry, request)
            if page is not None:
                stats.hits += 1
                return page
        stats.misses += 1
        if entry is not None or request.types or request.statuses:
            # The head is cached, just not deep enough for this filter; or this filtered
            # page could not fill the head anyway. Either way one query answers it.
            return await self._inner.history(request)
        head = await self._inner.history(HistoryRequest(request.wallet_id, limit=HEAD_SIZE))
        await self._cache.fill_history(request.wallet_id, generation, head)
        page = page_from_head(head.transactions, not head.has_next, request)
        assert page is not None, "an unfiltered head answers any first page"
        return page
