"""Settle PENDING withdrawals and transfers, many at a time.

A job may run twice (redelivered after a crash, re-queued by the sweeper, duplicated by a
retry): settle() does nothing to a transaction that is already final, so that is harmless.
A job that keeps failing is given up on: its transaction ends FAILED with INTERNAL, never
PENDING forever. In all, a transaction gets MAX_JOB_ATTEMPTS (5) attempts that count. In each,
its batch is tried up to RETRIES.tries (4) times on a conflict or a lost connection, and
should the batch fail for another reason, the transaction up to 4 times more alone: at most
8 tries an attempt, 40 in all, before it is failed (itself up to 4 tries).

Failures are counted in Redis from the start of each attempt, so an attempt
whose worker died counts too; a finished attempt clears the count, and one that failed only
because PostgreSQL was unreachable takes its count back (an outage fails no transaction).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError
from taskiq import Context, TaskiqDepends, async_shared_broker

from wallet.domain import services
from wallet.domain.batching import Batcher, together_or_each_alone
from wallet.domain.errors import InternalFailure
from wallet.domain.ports import UnitOfWorkFactory
from wallet.domain.retries import RetryPolicy, is_conflict
from wallet.persistence.database import is_disconnect
from wallet.persistence.outages import Outage

log = logging.getLogger(__name__)

SETTLE_TASK = "wallet.settle"
# A batch of transactions sent in one request: one job, settled in one unit of work.
SETTLE_MANY_TASK = "wallet.settle-many"
# Attempts that may fail (or die) before the transaction is failed with INTERNAL.
MAX_JOB_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class TaskDeps:
    uow_factory: UnitOfWorkFactory
    redis: Redis
    prefix: str
    # Jobs that run at the same time in one worker are settled together, up to this many
    # (WALLET_SETTLE_BATCH_SIZE).
    max_batch: int
    # Told when PostgreSQL is found away, so the worker says so once, naming it by address.
    postgres: Outage | None = None
    batcher: SettlementBatcher = field(init=False)
    count_attempts: AsyncScript = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "batcher", SettlementBatcher(self))
        object.__setattr__(self, "count_attempts", self.redis.register_script(_COUNT_ATTEMPTS))

    def attempts_key(self, transaction_id: UUID) -> str:
        return f"{self.prefix}:settle-attempts:{transaction_id}"


def _transient(error: BaseException) -> bool:
    return is_conflict(error) or is_disconnect(error)


# Tries within one attempt when PostgreSQL aborts us or is briefly unreachable, waiting up to
# 0.2, 0.4 and 0.8 s between them: longer than that, and the transactions wait for the
# sweeper instead (an outage fails none of them).
RETRIES = RetryPolicy(tries=4, first_delay=0.2, transient=_transient)


# Each counter counted up and given a day to live, in one call for the whole batch: as two
# commands a transaction, packing them was an eighth of a worker's CPU (py-spy, batches).
_COUNT_ATTEMPTS = """
local counts = {}
for i, key in ipairs(KEYS) do
  counts[i] = redis.call('INCR', key)
  redis.call('EXPIRE', key, ARGV[1])
end
return counts
"""
ATTEMPTS_TTL_SECONDS = 86_400


async def _count_attempts(deps: TaskDeps, ids: Sequence[UUID]) -> list[int]:
    try:
        keys = [deps.attempts_key(i) for i in ids]
        counts = await deps.count_attempts(keys=keys, args=[ATTEMPTS_TTL_SECONDS])
        return [int(n) for n in counts]
    except (RedisError, OSError):
        return [1] * len(ids)  # without the count we still settle; the cap waits for Redis


async def _clear_attempts(deps: TaskDeps, ids: Sequence[UUID]) -> None:
    try:
        await deps.redis.delete(*(deps.attempts_key(i) for i in ids))
    except (RedisError, OSError):
        log.warning("could not clear the attempt counts of %d transactions", len(ids))


async def _uncount_attempts(deps: TaskDeps, ids: Sequence[UUID]) -> None:
    try:
        async with deps.redis.pipeline(transaction=False) as pipe:
            for transaction_id in ids:
                pipe.decr(deps.attempts_key(transaction_id))
            await pipe.execute()
    except (RedisError, OSError):
        log.warning("could not uncount the attempts of %d transactions", len(ids))


async def _give_up(deps: TaskDeps, transaction_id: UUID, failures: int) -> None:
    failure = InternalFailure(
        f"settlement failed {failures} times; the transaction was given up on"
    )
    await RETRIES.run(lambda: services.fail_pending(deps.uow_factory(), transaction_id, failure))
    log.error("gave up settling %s after %d attempts", transaction_id, failures)


class SettlementBatcher:
    """Gathers the jobs running at once in this worker and settles them in one unit of work,
    a batch at a time, or two while more wait than one takes (domain/batching.py): while one
    holds its wallets' locks, the next reads what it will settle and waits for them, and the
    rest fill up. One at a time, the worker sat idle a third of the time under batches of
    transfers (bench)."""

    def __init__(self, deps: TaskDeps) -> None:
        self._deps = deps
        self._batches: Batcher[UUID, None] = Batcher(self._settle_batch, deps.max_batch, parallel=2)

    async def settle(self, transaction_id: UUID) -> None:
        await self._batches(transaction_id)

    async def settle_many(self, transaction_ids: list[UUID]) -> None:
        """Settle the transactions of one job (a batch sent in one request) with the jobs
        running beside it: all join the next batch, one unit of work at a time. Run as units
        of work of their own, concurrent batches locked hundreds of wallets each and queued
        behind one another's locks (bench: 18 of 19 backends waiting)."""
        await asyncio.gather(*(self._batches(i) for i in transaction_ids))

    async def _settle_batch(self, ids: list[UUID]) -> list[Exception | None]:
        # A job delivered twice may be in one batch twice: settle it once, answer both.
        errors = await self._settle(list(dict.fromkeys(ids)))
        return [errors.get(i) for i in ids]

    async def _settle(self, ids: list[UUID]) -> dict[UUID, Exception]:
        """Settle the batch; returns the error of each transaction that could not be."""
        deps = self._deps
        attempts = await _count_attempts(deps, ids)
        errors: dict[UUID, Exception] = {}
        ready = []
        for transaction_id, attempt in zip(ids, attempts, strict=True):
            if attempt > MAX_JOB_ATTEMPTS:
                try:
                    await _give_up(deps, transaction_id, attempt - 1)
                except Exception as error:
                    errors[transaction_id] = error
                else:
                    await _clear_attempts(deps, [transaction_id])
            else:
                ready.append(transaction_id)
        if not ready:
            return errors
        outcomes = await together_or_each_alone(
            ready, self._settle_together, self._settle_alone, what="settlements"
        )
        errors |= {i: e for i, e in zip(ready, outcomes, strict=True) if e is not None}
        await _clear_attempts(deps, [i for i in ready if i not in errors])
        return errors

    async def _settle_together(self, ids: Sequence[UUID]) -> list[Exception | None]:
        deps = self._deps
        try:
            await RETRIES.run(lambda: services.settle(deps.uow_factory(), ids))
        except Exception as error:
            if not _transient(error):
                if len(ids) == 1:  # no one-by-one run follows to log it
                    log.exception("settling %s failed", ids[0])
                raise
            # PostgreSQL is away: not these transactions' fault, so it does not count
            # towards giving up on them. The sweeper queues them again once it is back.
            await _uncount_attempts(deps, ids)
            if deps.postgres is not None:
                deps.postgres.lost(error)
            log.debug("PostgreSQL unavailable; %d transactions wait", len(ids))
            return [error] * len(ids)
        return [None] * len(ids)

    async def _settle_alone(self, transaction_id: UUID) -> None:
        try:
            await RETRIES.run(lambda: services.settle(self._deps.uow_factory(), [transaction_id]))
        except Exception:
            log.exception("settling %s failed", transaction_id)
            raise


@async_shared_broker.task(task_name=SETTLE_TASK)
async def settle_transaction(transaction_id: str, context: Context = TaskiqDepends()) -> None:
    deps: TaskDeps = context.state.deps
    await deps.batcher.settle(UUID(transaction_id))


@async_shared_broker.task(task_name=SETTLE_MANY_TASK)
async def settle_transactions(
    transaction_ids: list[str], context: Context = TaskiqDepends()
) -> None:
    deps: TaskDeps = context.state.deps
    await deps.batcher.settle_many([UUID(i) for i in transaction_ids])
