"""Group commit: many requests share one unit of work, and each is decided as if it ran alone.

A use case is written for a unit of work of its own (services.py). To let the requests that
arrive together share one database transaction, each is handed a member of one shared unit
of work instead (shared_unit_of_work.py). A refusal stays its own request's; anything else
fails the group, and each request is then decided again in a unit of work of its own, which
is logged once (batching.together_or_each_alone).

Retries, in all: a group that PostgreSQL aborts (a deadlock, a serialization failure) is run
again up to CONFLICTS.tries times (8); should it still fail, each request gets up to 8 more
tries alone. So a request is tried at most 16 times.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Protocol, TypeVar

from wallet.domain.batching import outcome, together_or_each_alone
from wallet.domain.ports import UnitOfWork, UnitOfWorkFactory
from wallet.domain.retries import CONFLICTS
from wallet.domain.shared_unit_of_work import SharedUnitOfWork, Undecidable

log = logging.getLogger(__name__)

C = TypeVar("C", bound="Command")
R = TypeVar("R")
A = TypeVar("A")


class Command(Protocol):
    @property
    def client_transaction_id(self) -> str | None: ...


UseCase = Callable[[UnitOfWork, C], Awaitable[R]]


async def run_alone(
    uow_factory: UnitOfWorkFactory, use_case: Callable[[UnitOfWork, A], Awaitable[R]], command: A
) -> R:
    """Run one use case in a unit of work of its own, again if PostgreSQL aborts it."""
    return await CONFLICTS.run(lambda: use_case(uow_factory(), command))


async def run_together(
    uow_factory: UnitOfWorkFactory, use_case: UseCase[C, R], commands: Sequence[C]
) -> list[R | Exception]:
    """Run the use case for each command, sharing one unit of work; answers in order.

    Each answer is what running it alone would have given, or the exception that would have
    raised. A command repeating the key of one before it waits for that one's commit, then
    replays it.
    """
    first: list[int] = []
    again: list[int] = []
    keys: set[str] = set()
    for n, command in enumerate(commands):
        key = command.client_transaction_id
        (again if key in keys else first).append(n)
        if key is not None:
            keys.add(key)
    alone = partial(run_alone, uow_factory, use_case)
    decided = await together_or_each_alone(
        [commands[n] for n in first],
        partial(_together, uow_factory, use_case),
        alone,
        what="requests",
    )
    outcomes: dict[int, R | Exception] = dict(zip(first, decided, strict=True))
    for n in again:
        outcomes[n] = await outcome(alone(commands[n]))
    return [outcomes[n] for n in range(len(commands))]


async def _together(
    uow_factory: UnitOfWorkFactory, use_case: UseCase[C, R], commands: Sequence[C]
) -> Sequence[R | Exception]:
    if len(commands) <= 1:
        return [await outcome(run_alone(uow_factory, use_case, c)) for c in commands]

    async def attempt() -> list[R | Exception]:
        shared: SharedUnitOfWork | None = None
        outcomes: list[R | Exception] | None = None
        try:
            async with uow_factory() as uow:
                shared = SharedUnitOfWork(uow)
                outcomes = await shared.run([_bound(use_case, c) for c in commands])
        except Exception:
            if shared is None or not shared.committed:
                raise
            # Committed: running them again could apply some twice. A bug, if ever seen.
            log.exception("a batch of %d failed after its commit", len(commands))
            if outcomes is None:
                outcomes = [Undecidable("failed after its commit") for _ in commands]
        assert outcomes is not None
        return outcomes

    return await CONFLICTS.run(attempt)


def _bound(use_case: UseCase[C, R], command: C) -> Callable[[UnitOfWork], Awaitable[R]]:
    return lambda uow: use_case(uow, command)
