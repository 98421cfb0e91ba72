"""The service layer straight on PostgreSQL: the ceiling under the HTTP and GraphQL layers.

The same use cases the API and the worker run (wallet.domain.services, on the real unit of
work, through the same Batchers an API process uses), called in-process by `clients`
coroutines on one event loop, with no HTTP, no GraphQL and no Redis. Set beside pgbench and
the full stack, it tells how much of a request's cost is the database's and the domain's,
and how much the layers above add.

    deposits     run_together(services.deposit), each deposit with its own clientTransactionId
    submissions  run_together(services.submit) (records PENDING transfers and their keys)
    settlements  services.settle over those submissions, `batch` at a time and one
                 batch at a time, as one worker's batcher does under load
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from wallet.domain import services
from wallet.domain.batching import Batcher
from wallet.domain.callers import ADMIN_SCOPE, Caller
from wallet.domain.group_commit import Request, run_alone, run_together, run_unattended
from wallet.domain.ports import UnitOfWorkFactory
from wallet.persistence.database import create_engine
from wallet.persistence.repositories import FactBook
from wallet.persistence.unit_of_work import SqlUnitOfWork


class Meter(Protocol):
    def stop(self) -> dict[str, float]: ...


@dataclass(frozen=True)
class Rate:
    name: str
    operations: int
    seconds: float
    cores: dict[str, float] = field(default_factory=dict)  # where the CPU went meanwhile

    @property
    def per_second(self) -> float:
        return self.operations / self.seconds if self.seconds else 0.0


async def _for(seconds: float, clients: int, one: object) -> tuple[int, float]:
    """Run `one()` from `clients` coroutines until `seconds` pass; (operations, elapsed)."""
    done = 0
    deadline = time.monotonic() + seconds

    async def client() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            await one()  # type: ignore[operator]
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    return done, time.monotonic() - started


async def measure(
    database_url: str,
    *,
    seconds: float,
    meter: Callable[[], Meter],
    clients: int = 8,
    wallets: int = 1000,
    batch: int = 64,
) -> list[Rate]:
    """Deposits, then transfer submissions, then their settlement, on a fresh database."""
    engine = create_engine(database_url, pool_size=clients + 2)
    book = FactBook()
    # One caller owns every wallet and may fund them: ownership costs the same check each time.
    caller = Caller("bench", frozenset({ADMIN_SCOPE}))

    def uow_factory() -> SqlUnitOfWork:
        return SqlUnitOfWork(engine, (), book)

    factory: UnitOfWorkFactory = uow_factory
    try:
        ids = [
            str(
                (
                    await run_alone(
                        factory,
                        services.create_wallet,
                        caller,
                        services.CreateWallet(initial_balance="1000000.00"),
                    )
                ).id
            )
            for _ in range(wallets)
        ]
        rng = random.Random(11)
        run = uuid.uuid4().hex[:8]

        deposits = Batcher(partial(run_together, factory, services.deposit))
        submissions = Batcher(partial(run_together, factory, services.submit))

        async def deposit() -> None:
            command = services.Deposit(rng.choice(ids), "1.00", f"s{run}-{uuid.uuid4().hex}")
            await deposits(Request(caller, command))

        submitted: list[uuid.UUID] = []

        async def submit() -> None:
            sender, receiver = rng.sample(ids, 2)
            command = services.Transfer(sender, receiver, "0.01", f"s{run}-{uuid.uuid4().hex}")
            submitted.append((await submissions(Request(caller, command))).id)

        rates = []
        for name, one in (("deposits", deposit), ("submissions", submit)):
            watching = meter()
            done, elapsed = await _for(seconds, clients, one)
            rates.append(Rate(name, done, elapsed, watching.stop()))

        pending = [submitted[i : i + batch] for i in range(0, len(submitted), batch)]

        watching = meter()
        started = time.monotonic()
        settled = 0
        for ids_of_batch in pending:
            settled += len(await run_unattended(factory, services.settle, ids_of_batch))
        elapsed = time.monotonic() - started
        rates.append(Rate(f"settlements ({batch} a batch)", settled, elapsed, watching.stop()))
        return rates
    finally:
        await engine.dispose()
