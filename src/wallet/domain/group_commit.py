"""Group commit: many requests share one unit of work, and each is decided as if it ran alone.

A use case is written for a unit of work of its own (services.py). To let the requests that
arrive together share one database transaction, each is handed a *member* of one shared unit
of work instead. The members run side by side; once every one of them waits on the database,
their calls of one kind are made as one call (one lock for all the wallets, one claim for all
the keys, one write, one commit) and each gets its own part of the answer. The calls are taken
in lock order (wallets, then keys, then writes), a kind at a time.

A member the rules refuse (a WalletError) drops out alone: the keys it claimed are given back,
and it had written nothing. Anything else fails the whole group; `run_together` then decides
each request again in a unit of work of its own, and logs that it did.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from functools import partial
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar
from uuid import UUID

from wallet.domain.batching import outcome, together_or_each_alone
from wallet.domain.errors import WalletError
from wallet.domain.model import IdempotencyRecord, LedgerEntry, Transaction, Wallet
from wallet.domain.money import Currency
from wallet.domain.ports import UnitOfWork, UnitOfWorkFactory
from wallet.domain.retries import CONFLICTS

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
        async with uow_factory() as uow:
            group = _Group(uow, len(commands))
            try:
                return [*await group.run([partial(use_case, group.member(), c) for c in commands])]
            except Exception:
                if group.committed:
                    # Running them again could apply some twice. A bug, if ever seen.
                    log.exception("a batch of %d failed after its commit", len(commands))
                    return [Undecidable("failed after its commit")] * len(commands)
                raise

    return await CONFLICTS.run(attempt)


class Undecidable(Exception):
    """A member left something behind that only rolling back the whole group undoes."""


class _Kind(IntEnum):
    """The kinds of call members make, in the order a group makes them (the lock order)."""

    LOCK = 1
    CURRENCIES = 2
    CLAIM = 3
    CALL = 4  # anything else, made one by one
    WRITE = 5
    SUBMIT = 6
    COMMIT = 7


@dataclass(slots=True)
class _Call:
    member: int
    kind: _Kind
    argument: Any
    answer: asyncio.Future[Any]


@dataclass(slots=True)
class _Write:
    recorded: Sequence[Transaction]
    decided: Sequence[Transaction]
    balances: Sequence[Wallet]
    entries: Sequence[LedgerEntry]


@dataclass(slots=True)
class _Group:
    uow: UnitOfWork
    running: int
    calls: list[_Call] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    failure: BaseException | None = None
    # Wallets locked so far, one object each, which every member changes in turn: a member
    # sees the balance the ones before it left.
    locked: dict[UUID, Wallet] = field(default_factory=dict)
    claimed: dict[int, list[str]] = field(default_factory=dict)
    wrote: set[int] = field(default_factory=set)
    committed: bool = False
    unclaim: list[str] = field(default_factory=list)
    members: int = 0

    def member(self) -> _Member:
        self.members += 1
        return _Member(self, self.members - 1)

    async def ask(self, member: int, kind: _Kind, argument: Any = None) -> Any:
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.calls.append(_Call(member, kind, argument, answer))
        self._wake_when_all_wait()
        return await answer

    def _wake_when_all_wait(self) -> None:
        if self.failure is not None or len(self.calls) >= self.running:
            self.ready.set()

    async def run(self, runs: Sequence[Callable[[], Awaitable[R]]]) -> list[R | WalletError]:
        outcomes: list[Any] = [None] * len(runs)
        tasks = [asyncio.create_task(self._member(n, r, outcomes)) for n, r in enumerate(runs)]
        try:
            while self.running:
                await self.ready.wait()
                self.ready.clear()
                if self.failure is not None:
                    raise self.failure
                if self.calls and len(self.calls) >= self.running:
                    await self._step()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return outcomes

    async def _member(self, n: int, run: Callable[[], Awaitable[Any]], outcomes: list[Any]) -> None:
        try:
            outcomes[n] = await run()
            if n in self.wrote and not self.committed:
                self.failure = Undecidable(f"member {n} wrote and left without committing")
            self.unclaim += [] if self.committed else self.claimed.pop(n, [])
        except WalletError as refusal:
            outcomes[n] = refusal
            if n in self.wrote:
                self.failure = Undecidable(f"member {n} was refused after writing: {refusal}")
            self.unclaim += self.claimed.pop(n, [])
        except asyncio.CancelledError:
            raise
        except BaseException as error:
            self.failure = self.failure or error
        finally:
            self.running -= 1
            self._wake_when_all_wait()

    async def _step(self) -> None:
        kind = min(call.kind for call in self.calls)
        now = [call for call in self.calls if call.kind is kind]
        self.calls = [call for call in self.calls if call.kind is not kind]
        answers = await _MAKE[kind](self, [call.argument for call in now], [c.member for c in now])
        for call, answer in zip(now, answers, strict=True):
            if not call.answer.done():
                call.answer.set_result(answer)

    async def _lock(self, asked: list[set[UUID]], _: list[int]) -> list[dict[UUID, Wallet]]:
        new = set().union(*asked) - self.locked.keys()
        if new:
            self.locked.update(await self.uow.wallets.lock(new))
        return [{i: self.locked[i] for i in ids if i in self.locked} for ids in asked]

    async def _currencies(self, asked: list[set[UUID]], _: list[int]) -> list[dict[UUID, Currency]]:
        known = await self.uow.wallets.currencies(set().union(*asked))
        return [{i: known[i] for i in ids if i in known} for ids in asked]

    async def _claim(
        self, records: list[IdempotencyRecord], members: list[int]
    ) -> list[IdempotencyRecord | None]:
        earlier = await self.uow.idempotency_keys.claim_many(records)
        for record, member in zip(records, members, strict=True):
            if record.key not in earlier:
                self.claimed.setdefault(member, []).append(record.key)
        return [earlier.get(record.key) for record in records]

    async def _call(
        self, calls: list[tuple[Callable[[], Awaitable[Any]], bool]], members: list[int]
    ) -> list[Any]:
        answers = []
        for (call, writes), member in zip(calls, members, strict=True):
            answers.append(await call())
            if writes:
                self.wrote.add(member)
        return answers

    async def _write(self, writes: list[_Write], members: list[int]) -> list[list[Transaction]]:
        self.wrote.update(members)
        stored = await self.uow.write(
            recorded=[t for w in writes for t in w.recorded],
            decided=[t for w in writes for t in w.decided],
            balances=list({w.id: w for write in writes for w in write.balances}.values()),
            entries=[e for w in writes for e in w.entries],
        )
        # Stored as asked: every member's recorded ones, then every member's decided ones.
        recorded, decided = iter(stored), iter(stored[sum(len(w.recorded) for w in writes) :])
        return [
            [next(recorded) for _ in w.recorded] + [next(decided) for _ in w.decided]
            for w in writes
        ]

    async def _submit(
        self, asked: list[list[tuple[Transaction, IdempotencyRecord | None]]], members: list[int]
    ) -> list[list[Transaction | None]]:
        await self._unclaim()
        stored = iter(await self.uow.submit_and_commit([s for each in asked for s in each]))
        self.committed = True
        answers = [[next(stored) for _ in each] for each in asked]
        # None where a key was taken: nothing was written for that member.
        self.wrote.update(m for m, a in zip(members, answers, strict=True) if any(a))
        return answers

    async def _commit(self, asked: list[None], _: list[int]) -> list[None]:
        await self._unclaim()
        await self.uow.commit()
        self.committed = True
        return [None] * len(asked)

    async def _unclaim(self) -> None:
        if self.unclaim:
            await self.uow.idempotency_keys.release(self.unclaim)
            self.unclaim = []


_MAKE: dict[_Kind, Callable[[_Group, list[Any], list[int]], Awaitable[Sequence[Any]]]] = {
    _Kind.LOCK: _Group._lock,
    _Kind.CURRENCIES: _Group._currencies,
    _Kind.CLAIM: _Group._claim,
    _Kind.CALL: _Group._call,
    _Kind.WRITE: _Group._write,
    _Kind.SUBMIT: _Group._submit,
    _Kind.COMMIT: _Group._commit,
}


class _Member:
    """One request's view of the group's unit of work: a UnitOfWork like any other."""

    def __init__(self, group: _Group, n: int) -> None:
        self._group = group
        self._n = n
        self.wallets = _Wallets(self)
        self.transactions = _Transactions(self)
        self.idempotency_keys = _Keys(self)

    async def ask(self, kind: _Kind, argument: Any = None) -> Any:
        return await self._group.ask(self._n, kind, argument)

    async def call(self, call: Callable[[], Awaitable[R]], *, writes: bool = False) -> R:
        answer: R = await self.ask(_Kind.CALL, (call, writes))
        return answer

    @property
    def shared(self) -> UnitOfWork:
        return self._group.uow

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """What a member leaves behind is settled by the group once it ends."""

    async def write(
        self,
        *,
        recorded: Sequence[Transaction] = (),
        decided: Sequence[Transaction] = (),
        balances: Sequence[Wallet] = (),
        entries: Sequence[LedgerEntry] = (),
    ) -> list[Transaction]:
        stored: list[Transaction] = await self.ask(
            _Kind.WRITE, _Write(recorded, decided, balances, entries)
        )
        return stored

    async def submit_and_commit(
        self, submissions: Sequence[tuple[Transaction, IdempotencyRecord | None]]
    ) -> list[Transaction | None]:
        stored: list[Transaction | None] = await self.ask(_Kind.SUBMIT, list(submissions))
        return stored

    async def commit(self) -> None:
        await self.ask(_Kind.COMMIT)


class _Wallets:
    def __init__(self, member: _Member) -> None:
        self._member = member

    async def add(self, wallet: Wallet) -> Wallet:
        return await self._member.call(lambda: self._member.shared.wallets.add(wallet), writes=True)

    async def get(self, wallet_id: UUID) -> Wallet | None:
        return await self._member.call(lambda: self._member.shared.wallets.get(wallet_id))

    async def get_many(self, wallet_ids: Iterable[UUID]) -> dict[UUID, Wallet]:
        ids = list(wallet_ids)
        return await self._member.call(lambda: self._member.shared.wallets.get_many(ids))

    async def currencies(self, wallet_ids: Iterable[UUID]) -> dict[UUID, Currency]:
        known: dict[UUID, Currency] = await self._member.ask(_Kind.CURRENCIES, set(wallet_ids))
        return known

    async def lock(self, wallet_ids: Iterable[UUID]) -> dict[UUID, Wallet]:
        locked: dict[UUID, Wallet] = await self._member.ask(_Kind.LOCK, set(wallet_ids))
        return locked

    async def save(self, wallets: Sequence[Wallet]) -> None:
        await self._member.call(lambda: self._member.shared.wallets.save(wallets), writes=True)


class _Transactions:
    def __init__(self, member: _Member) -> None:
        self._member = member

    async def get(self, transaction_id: UUID, *, lock: bool = False) -> Transaction | None:
        shared = self._member.shared
        return await self._member.call(lambda: shared.transactions.get(transaction_id, lock=lock))

    async def pending(
        self, transaction_ids: Sequence[UUID], *, lock: bool = False
    ) -> list[Transaction]:
        shared = self._member.shared
        return await self._member.call(
            lambda: shared.transactions.pending(transaction_ids, lock=lock)
        )


class _Keys:
    def __init__(self, member: _Member) -> None:
        self._member = member

    async def claim(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        earlier: IdempotencyRecord | None = await self._member.ask(_Kind.CLAIM, record)
        return earlier

    async def get(self, key: str) -> IdempotencyRecord | None:
        return await self._member.call(lambda: self._member.shared.idempotency_keys.get(key))

    async def claim_many(
        self, records: Sequence[IdempotencyRecord]
    ) -> dict[str, IdempotencyRecord]:
        keys = self._member.shared.idempotency_keys
        return await self._member.call(lambda: keys.claim_many(records), writes=True)

    async def release(self, keys: Sequence[str]) -> None:
        shared = self._member.shared.idempotency_keys
        await self._member.call(lambda: shared.release(keys), writes=True)
