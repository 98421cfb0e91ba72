"""One unit of work shared by many use cases, each seeing a member of it as its own.

The members run side by side; once every one of them waits on the database, their calls of
one kind are made as one call (one lock for all the wallets, one claim for all the keys, one
write, one commit) and each gets its own part of the answer. Calls are taken in lock order
(wallets, then keys, then writes), a kind at a time.

A member the rules refuse (a WalletError) drops out alone: the keys it claimed are given
back, and it must have written nothing. What only rolling the whole unit of work back could
undo fails it instead (Undecidable): a member that wrote and was refused, or that left
without committing, or a balance changed by no ledger entry (a member that changed a wallet
and was then refused before writing it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum
from types import CoroutineType, TracebackType
from typing import Any, Self
from uuid import UUID

from wallet.domain.errors import WalletError
from wallet.domain.model import (
    Hold,
    IdempotencyRecord,
    LedgerEntry,
    ScopedKey,
    Transaction,
    Wallet,
    WalletFacts,
)
from wallet.domain.ports import UnitOfWork


class Undecidable(Exception):
    """The members cannot be decided together; run each alone (or, once committed, report
    it: running them again could apply some twice)."""


class _Kind(IntEnum):
    """The kinds of call members make, in the order they are made (the lock order)."""

    LOCK = 1
    FACTS = 2
    CLAIM = 3
    CALL = 4  # anything else, made one by one
    WRITE = 5
    SUBMIT = 6
    COMMIT = 7


class _Call:
    """A member's call of the shared unit of work: awaiting one hands it to the driver."""

    __slots__ = ("argument", "kind", "member")

    def __init__(self, member: int, kind: _Kind, argument: Any) -> None:
        self.member = member
        self.kind = kind
        self.argument = argument

    def __await__(self) -> Generator[_Call, Any, Any]:
        return (yield self)


@dataclass(slots=True)
class _Write:
    recorded: Sequence[Transaction]
    decided: Sequence[Transaction]
    balances: Sequence[Wallet]
    entries: Sequence[LedgerEntry]
    originals: Sequence[Transaction]


# What a member is resumed with: its call's answer, or the exception its call raised.
_Resume = tuple[Any, BaseException | None]


@dataclass(slots=True)
class SharedUnitOfWork:
    uow: UnitOfWork
    committed: bool = False
    # Wallets locked so far, one object each, which every member changes in turn: a member
    # sees the balance the ones before it left. Each with its balance when locked and the
    # sum of the entries written for it since, which must always explain its balance.
    locked: dict[UUID, Wallet] = field(default_factory=dict)
    explained: dict[UUID, int] = field(default_factory=dict)
    claimed: dict[int, list[ScopedKey]] = field(default_factory=dict)
    wrote: set[int] = field(default_factory=set)
    unclaim: list[ScopedKey] = field(default_factory=list)

    async def run(self, runs: Sequence[Callable[[UnitOfWork], Awaitable[Any]]]) -> list[Any]:
        """Run each with a member of its own; answers in order, a refusal or (once committed)
        a member's own failure in its place. Raises what fails them all.

        The members' coroutines are stepped here, not scheduled as tasks: each runs until it
        awaits a call of its member, so once every one has been stepped, every one waits.
        """
        outcomes: list[Any] = [None] * len(runs)
        running: dict[int, Coroutine[Any, Any, Any]] = {}
        for n, run in enumerate(runs):
            coroutine = run(_Member(self, n))
            assert isinstance(coroutine, CoroutineType), "a use case is a coroutine function"
            running[n] = coroutine
        resume: dict[int, _Resume] = dict.fromkeys(running, (None, None))
        waiting: list[_Call] = []
        try:
            while running:
                for n, (answer, error) in resume.items():
                    call = self._step_member(n, running, answer, error, outcomes)
                    if call is not None:
                        waiting.append(call)
                if not waiting:
                    break
                kind = min(call.kind for call in waiting)
                now = [call for call in waiting if call.kind is kind]
                waiting = [call for call in waiting if call.kind is not kind]
                resume = await self._make(kind, now)
        finally:
            for coroutine in running.values():
                coroutine.close()
        return outcomes

    def _step_member(
        self,
        n: int,
        running: dict[int, Coroutine[Any, Any, Any]],
        answer: Any,
        error: BaseException | None,
        outcomes: list[Any],
    ) -> _Call | None:
        """Resume the member until its next call (returned), or its end (None)."""
        coroutine = running[n]
        try:
            call = coroutine.send(answer) if error is None else coroutine.throw(error)
        except StopIteration as returned:
            del running[n]
            outcomes[n] = returned.value
            if n in self.wrote and not self.committed:
                raise Undecidable(f"member {n} wrote and left without committing") from None
            if not self.committed:
                self.unclaim += self.claimed.pop(n, [])
            return None
        except WalletError as refusal:
            del running[n]
            outcomes[n] = refusal
            if n in self.wrote:
                raise Undecidable(f"member {n} was refused after writing: {refusal}") from None
            self.unclaim += self.claimed.pop(n, [])
            return None
        except Exception as failure:
            del running[n]
            if not self.committed:
                raise
            outcomes[n] = failure  # its own failure: the others' answers stand
            return None
        if not isinstance(call, _Call):
            raise Undecidable(f"member {n} awaited something other than its unit of work")
        return call

    async def _make(self, kind: _Kind, calls: list[_Call]) -> dict[int, _Resume]:
        if kind is _Kind.CALL:
            # One by one, each answered with what it returned or raised: a member's own
            # failure is its own (and fails the others only while uncommitted).
            return {call.member: await self._call(call) for call in calls}
        arguments = [call.argument for call in calls]
        members = [call.member for call in calls]
        answers = await _MAKE[kind](self, arguments, members)
        return {m: (answer, None) for m, answer in zip(members, answers, strict=True)}

    async def _call(self, call: _Call) -> _Resume:
        make, writes = call.argument
        try:
            answer = await make()
        except Exception as error:
            return None, error
        if writes:
            self.wrote.add(call.member)
        return answer, None

    async def _lock(self, asked: list[set[UUID]], _: list[int]) -> list[dict[UUID, Wallet]]:
        new = set().union(*asked) - self.locked.keys()
        if new:
            got = await self.uow.wallets.lock(new)
            self.locked.update(got)
            self.explained.update({i: w.balance.minor for i, w in got.items()})
        return [{i: self.locked[i] for i in ids if i in self.locked} for ids in asked]

    async def _facts(self, asked: list[set[UUID]], _: list[int]) -> list[dict[UUID, WalletFacts]]:
        known = await self.uow.wallets.facts(set().union(*asked))
        return [{i: known[i] for i in ids if i in known} for ids in asked]

    async def _claim(
        self, records: list[IdempotencyRecord], members: list[int]
    ) -> list[IdempotencyRecord | None]:
        earlier = await self.uow.idempotency_keys.claim_many(records)
        for record, member in zip(records, members, strict=True):
            if record.scoped_key not in earlier:
                self.claimed.setdefault(member, []).append(record.scoped_key)
        return [earlier.get(record.scoped_key) for record in records]

    async def _write(self, writes: list[_Write], members: list[int]) -> list[list[Transaction]]:
        self.wrote.update(members)
        entries = [e for w in writes for e in w.entries]
        for entry in entries:
            if entry.wallet_id in self.explained:
                self.explained[entry.wallet_id] += entry.delta
        stored = await self.uow.write(
            recorded=[t for w in writes for t in w.recorded],
            decided=[t for w in writes for t in w.decided],
            balances=list({w.id: w for write in writes for w in write.balances}.values()),
            entries=entries,
            originals=[t for w in writes for t in w.originals],
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
        await self._before_commit()
        stored = iter(await self.uow.submit_and_commit([s for each in asked for s in each]))
        self.committed = True
        answers = [[next(stored) for _ in each] for each in asked]
        # None where a key was taken: nothing was written for that member.
        self.wrote.update(m for m, a in zip(members, answers, strict=True) if any(a))
        return answers

    async def _commit(self, asked: list[None], _: list[int]) -> list[None]:
        await self._before_commit()
        await self.uow.commit()
        self.committed = True
        return [None] * len(asked)

    async def _before_commit(self) -> None:
        unexplained = [i for i, w in self.locked.items() if w.balance.minor != self.explained[i]]
        if unexplained:
            raise Undecidable(f"balances changed by no ledger entry: {unexplained}")
        if self.unclaim:
            await self.uow.idempotency_keys.release(self.unclaim)
            self.unclaim = []


_MAKE: dict[_Kind, Callable[[SharedUnitOfWork, list[Any], list[int]], Awaitable[Sequence[Any]]]] = {
    _Kind.LOCK: SharedUnitOfWork._lock,
    _Kind.FACTS: SharedUnitOfWork._facts,
    _Kind.CLAIM: SharedUnitOfWork._claim,
    _Kind.WRITE: SharedUnitOfWork._write,
    _Kind.SUBMIT: SharedUnitOfWork._submit,
    _Kind.COMMIT: SharedUnitOfWork._commit,
}


class _Member:
    """One use case's view of the shared unit of work: a UnitOfWork like any other."""

    __slots__ = ("_n", "_shared", "holds", "idempotency_keys", "transactions", "wallets")

    def __init__(self, shared: SharedUnitOfWork, n: int) -> None:
        self._shared = shared
        self._n = n
        self.wallets = _Wallets(self)
        self.transactions = _Transactions(self)
        self.idempotency_keys = _Keys(self)
        self.holds = _Holds(self)

    async def ask(self, kind: _Kind, argument: Any = None) -> Any:
        return await _Call(self._n, kind, argument)

    async def call(self, make: Callable[[UnitOfWork], Awaitable[Any]], writes: bool = False) -> Any:
        """Make a call of the shared unit of work, one by one with the others'."""
        uow = self._shared.uow
        return await self.ask(_Kind.CALL, (lambda: make(uow), writes))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """What a member leaves behind is settled by the shared unit of work once it ends."""

    async def write(
        self,
        *,
        recorded: Sequence[Transaction] = (),
        decided: Sequence[Transaction] = (),
        balances: Sequence[Wallet] = (),
        entries: Sequence[LedgerEntry] = (),
        originals: Sequence[Transaction] = (),
    ) -> list[Transaction]:
        stored: list[Transaction] = await self.ask(
            _Kind.WRITE, _Write(recorded, decided, balances, entries, originals)
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
    __slots__ = ("_member",)

    def __init__(self, member: _Member) -> None:
        self._member = member

    async def add(self, wallet: Wallet) -> Wallet:
        added: Wallet = await self._member.call(lambda u: u.wallets.add(wallet), writes=True)
        return added

    async def get(self, wallet_id: UUID) -> Wallet | None:
        found: Wallet | None = await self._member.call(lambda u: u.wallets.get(wallet_id))
        return found

    async def get_many(self, wallet_ids: Iterable[UUID]) -> dict[UUID, Wallet]:
        ids = list(wallet_ids)
        found: dict[UUID, Wallet] = await self._member.call(lambda u: u.wallets.get_many(ids))
        return found

    async def facts(self, wallet_ids: Iterable[UUID]) -> dict[UUID, WalletFacts]:
        known: dict[UUID, WalletFacts] = await self._member.ask(_Kind.FACTS, set(wallet_ids))
        return known

    async def lock(
        self,
        wallet_ids: Iterable[UUID],
        *,
        skip_locked: bool = False,
        within: timedelta | None = None,
    ) -> dict[UUID, Wallet]:
        # Members share every lock they take; skipping would leave some members without.
        assert not skip_locked, "a member of a shared unit of work waits for its locks"
        assert within is None, "a member of a shared unit of work waits for its locks"
        locked: dict[UUID, Wallet] = await self._member.ask(_Kind.LOCK, set(wallet_ids))
        return locked


class _Transactions:
    __slots__ = ("_member",)

    def __init__(self, member: _Member) -> None:
        self._member = member

    async def get(self, transaction_id: UUID, *, lock: bool = False) -> Transaction | None:
        found: Transaction | None = await self._member.call(
            lambda u: u.transactions.get(transaction_id, lock=lock)
        )
        return found

    async def lock(self, transaction_ids: Iterable[UUID]) -> dict[UUID, Transaction]:
        ids = list(transaction_ids)
        locked: dict[UUID, Transaction] = await self._member.call(
            lambda u: u.transactions.lock(ids), writes=True
        )
        return locked

    async def pending(self, transaction_ids: Sequence[UUID]) -> list[Transaction]:
        found: list[Transaction] = await self._member.call(
            lambda u: u.transactions.pending(transaction_ids)
        )
        return found

    async def lock_pending(self, transaction_ids: Sequence[UUID]) -> set[UUID]:
        locked: set[UUID] = await self._member.call(
            lambda u: u.transactions.lock_pending(transaction_ids), writes=True
        )
        return locked


class _Keys:
    __slots__ = ("_member",)

    def __init__(self, member: _Member) -> None:
        self._member = member

    async def claim(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        earlier: IdempotencyRecord | None = await self._member.ask(_Kind.CLAIM, record)
        return earlier

    async def get(self, key: ScopedKey) -> IdempotencyRecord | None:
        found: IdempotencyRecord | None = await self._member.call(
            lambda u: u.idempotency_keys.get(key)
        )
        return found

    async def claim_many(
        self, records: Sequence[IdempotencyRecord]
    ) -> dict[ScopedKey, IdempotencyRecord]:
        earlier: dict[ScopedKey, IdempotencyRecord] = await self._member.call(
            lambda u: u.idempotency_keys.claim_many(records), writes=True
        )
        return earlier

    async def release(self, keys: Sequence[ScopedKey]) -> None:
        await self._member.call(lambda u: u.idempotency_keys.release(keys), writes=True)


class _Holds:
    """Holds are placed, captured and voided by requests run alone (their use cases hold
    their own locks), so a member only passes calls through, one by one."""

    __slots__ = ("_member",)

    def __init__(self, member: _Member) -> None:
        self._member = member

    async def add(self, hold: Hold) -> Hold:
        added: Hold = await self._member.call(lambda u: u.holds.add(hold), writes=True)
        return added

    async def get(self, hold_id: UUID, *, lock: bool = False) -> Hold | None:
        found: Hold | None = await self._member.call(lambda u: u.holds.get(hold_id, lock=lock))
        return found

    async def due(self, at: datetime, limit: int) -> list[Hold]:
        found: list[Hold] = await self._member.call(lambda u: u.holds.due(at, limit))
        return found

    async def lock(self, hold_ids: Sequence[UUID]) -> list[Hold]:
        found: list[Hold] = await self._member.call(lambda u: u.holds.lock(hold_ids))
        return found

    async def close(self, holds: Sequence[Hold]) -> list[Hold]:
        closed: list[Hold] = await self._member.call(lambda u: u.holds.close(holds), writes=True)
        return closed
