"""Settle one PENDING withdrawal or transfer.

A job may run twice (redelivered after a crash, re-queued by the sweeper, duplicated by a
retry): settle() does nothing to a transaction that is already final, so that is harmless.
A job that keeps failing is given up on: its transaction ends FAILED with INTERNAL, never
PENDING forever. Failures are counted in Redis from the start of each attempt, so an attempt
whose worker died counts too; a finished attempt clears the count.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from uuid import UUID

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from taskiq import Context, TaskiqDepends, async_shared_broker

from wallet.domain import services
from wallet.domain.errors import ConcurrencyConflict, InternalFailure
from wallet.domain.ports import UnitOfWorkFactory

log = logging.getLogger(__name__)

SETTLE_TASK = "wallet.settle"
# Attempts that may fail (or die) before the transaction is failed with INTERNAL.
MAX_ATTEMPTS = 5
# Tries within one attempt when PostgreSQL is briefly unreachable or aborts us.
TRANSIENT_TRIES = 4


@dataclass(frozen=True, slots=True)
class TaskDeps:
    uow_factory: UnitOfWorkFactory
    redis: Redis
    prefix: str

    def attempts_key(self, transaction_id: UUID) -> str:
        return f"{self.prefix}:settle-attempts:{transaction_id}"


def _transient(error: BaseException) -> bool:
    if isinstance(error, ConcurrencyConflict | OperationalError | InterfaceError | OSError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


async def _count_attempt(deps: TaskDeps, transaction_id: UUID) -> int:
    try:
        key = deps.attempts_key(transaction_id)
        async with deps.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 86_400)
            attempt, _ = await pipe.execute()
        return int(attempt)
    except (RedisError, OSError):
        return 1  # without the count we still settle; the cap just waits for Redis


async def _clear_attempts(deps: TaskDeps, transaction_id: UUID) -> None:
    try:
        await deps.redis.delete(deps.attempts_key(transaction_id))
    except (RedisError, OSError):
        log.warning("could not clear the attempt count of %s", transaction_id)


async def settle_with_retries(deps: TaskDeps, transaction_id: UUID) -> None:
    attempt = await _count_attempt(deps, transaction_id)
    if attempt > MAX_ATTEMPTS:
        failure = InternalFailure(
            f"settlement failed {attempt - 1} times; the transaction was given up on"
        )
        await services.fail_pending(deps.uow_factory, transaction_id, failure)
        log.error("gave up settling %s after %d attempts", transaction_id, attempt - 1)
        await _clear_attempts(deps, transaction_id)
        return
    for tries in range(1, TRANSIENT_TRIES + 1):
        try:
            await services.settle(deps.uow_factory, transaction_id)
            break
        except Exception as error:
            if not _transient(error) or tries == TRANSIENT_TRIES:
                log.exception("attempt %d to settle %s failed", attempt, transaction_id)
                raise
            await asyncio.sleep(random.uniform(0.05, 0.2) * 2**tries)
    await _clear_attempts(deps, transaction_id)


@async_shared_broker.task(task_name=SETTLE_TASK)
async def settle_transaction(transaction_id: str, context: Context = TaskiqDepends()) -> None:
    deps: TaskDeps = context.state.deps
    await settle_with_retries(deps, UUID(transaction_id))
