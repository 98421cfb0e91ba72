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
from dataclasses import dataclass
from functools import partial
from typing import Generic, Protocol, TypeVar

from wallet.domain import services
from wallet.domain.batching import outcome, together_or_each_alone
from wallet.domain.callers import Caller
from wallet.domain.errors import TransfersRejected
from wallet.domain.model import Transaction
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


UseCase = Callable[[Caller, UnitOfWork, C], Awaitable[R]]


@dataclass(frozen=True, slots=True)
class Request(Generic[C]):
    """One caller's command, as it waits to share a unit of work with others."""

    caller: Caller
    command: C


async def run_alone(
    uow_factory: UnitOfWorkFactory,
    use_case: Callable[[Caller, UnitOfWork, A], Awaitable[R]],
    caller: Caller,
    command: A,
) -> R:
    """Run one caller's use case in a unit of work of its own, again if PostgreSQL aborts it."""
    return await CONFLICTS.run(lambda: use_case(caller, uow_factory(), command))


async def run_unattended(
    uow_factory: UnitOfWorkFactory, work: Callable[[UnitOfWork, A], Awaitable[R]], argument: A
) -> R:
    """Run work no caller asked for (settling, for the worker) like run_alone."""
    return await CONFLICTS.run(lambda: work(uow_factory(), argument))


async def run_together(
    uow_factory: UnitOfWorkFactory, use_case: UseCase[C, R], requests: Sequence[Request[C]]
) -> list[R | Exception]:
    """Run the use case for each request, sharing one unit of work; answers in order.

    Each answer is what running it alone would have given, or the exception that would have
    raised. A request repeating the key of one before it by the same caller waits for that
    one's commit, then replays it; keys of different callers never meet.
    """
    first: list[int] = []
    again: list[int] = []
    keys: set[tuple[str, str]] = set()
    for n, request in enumerate(requests):
        key = request.command.client_transaction_id
        scoped = None if key is None else (request.caller.id, key)
        (again if scoped in keys else first).append(n)
        if scoped is not None:
            keys.add(scoped)
    decided = await together_or_each_alone(
        [requests[n] for n in first],
        partial(_together, uow_factory, use_case),
        partial(_alone, uow_factory, use_case),
        what="requests",
    )
    outcomes: dict[int, R | Exception] = dict(zip(first, decided, strict=True))
    for n in again:
        outcomes[n] = await outcome(_alone(uow_factory, use_case, requests[n]))
    return [outcomes[n] for n in range(len(requests))]


async def run_transfer_batch(
    uow_factory: UnitOfWorkFactory, caller: Caller, batch: services.TransferBatch
) -> list[Transaction | Exception]:
    """One caller's batch of transfers, an answer for each in order: an atomic batch in one
    unit of work, every transfer recorded or none; any other as transfers sent together by
    many callers are, each decided as if it came alone. Raises the refusal of the batch as a
    whole."""
    services.check_batch(batch)
    if batch.atomic:
        try:
            recorded = await run_alone(uow_factory, services.transfer_atomically, caller, batch)
        except TransfersRejected as rejected:
            refusals: list[Transaction | Exception] = list[Transaction | Exception](rejected.errors)
            return refusals
        return list[Transaction | Exception](recorded)
    requests = [Request(caller, transfer) for transfer in batch.transfers]
    return await run_together(uow_factory, services.transfer, requests)


async def _alone(uow_factory: UnitOfWorkFactory, use_case: UseCase[C, R], request: Request[C]) -> R:
    return await run_alone(uow_factory, use_case, request.caller, request.command)


async def _together(
    uow_factory: UnitOfWorkFactory, use_case: UseCase[C, R], requests: Sequence[Request[C]]
) -> Sequence[R | Exception]:
    if len(requests) <= 1:
        return [await outcome(_alone(uow_factory, use_case, r)) for r in requests]

    async def attempt() -> list[R | Exception]:
        shared: SharedUnitOfWork | None = None
        outcomes: list[R | Exception] | None = None
        try:
            async with uow_factory() as uow:
                shared = SharedUnitOfWork(uow)
                outcomes = await shared.run([_bound(use_case, r) for r in requests])
        except Exception:
            if shared is None or not shared.committed:
                raise
            # Committed: running them again could apply some twice. A bug, if ever seen.
            log.exception("a batch of %d failed after its commit", len(requests))
            if outcomes is None:
                outcomes = [Undecidable("failed after its commit") for _ in requests]
        assert outcomes is not None
        return outcomes

    return await CONFLICTS.run(attempt)


def _bound(use_case: UseCase[C, R], request: Request[C]) -> Callable[[UnitOfWork], Awaitable[R]]:
    return lambda uow: use_case(request.caller, uow, request.command)
