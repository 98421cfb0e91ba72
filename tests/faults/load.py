"""The load the faults land in: many clients moving money the way real ones do.

Each client sends deposits, withdrawals and transfers in both directions between a set of
wallets, refunds part of a transfer it sent a while ago (a reversal: the tester owns every
wallet, so it is every transfer's receiver's owner), and now and then sends an earlier request
again under its key. A request whose answer
never came (a refused connection, a reset, a timeout, a 5xx, a GraphQL error instead of a
payload) is sent again with the same key and the same parameters until it is answered, as a
client that must not lose a payment does. Everything sent and answered is kept, for the checks.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from tests import tokens

_PAYLOAD = "transaction { id status } errors { code }"
MUTATIONS = {
    "deposit": f"mutation($input: DepositInput!) {{ deposit(input: $input) {{ {_PAYLOAD} }} }}",
    "withdraw": f"mutation($input: WithdrawInput!) {{ withdraw(input: $input) {{ {_PAYLOAD} }} }}",
    "transfer": f"mutation($input: TransferInput!) {{ transfer(input: $input) {{ {_PAYLOAD} }} }}",
    "reverse": (
        "mutation($input: ReverseTransactionInput!) "
        f"{{ reverseTransaction(input: $input) {{ {_PAYLOAD} }} }}"
    ),
}
# The payload of each operation, by its mutation's name.
FIELDS = {
    "deposit": "deposit",
    "withdraw": "withdraw",
    "transfer": "transfer",
    "reverse": "reverseTransaction",
}
_CREATE_WALLET = """
mutation($input: CreateWalletInput!) {
  createWallet(input: $input) { wallet { id } errors { code } }
}"""
# Of every hundred requests a client sends: the rest are transfers.
_DEPOSITS, _WITHDRAWALS, _RESENDS, _REVERSALS = 25, 15, 15, 5
# A reversal refunds a transfer at least this many requests older, most likely settled by then.
_REVERSAL_AGE = 5
# A client that cannot get an answer for this long has met a service that did not recover.
GIVE_UP_SECONDS = 90.0


class Unanswered(Exception):
    """No payload came back: the request may or may not have been applied."""


@dataclass
class Request:
    """One payment a client wants made, under one key, however many times it is sent."""

    operation: str
    key: str
    amount: str
    # The wallet the money leaves (withdraw, transfer, reverse) or enters (deposit).
    wallet: str
    receiver: str | None = None
    # For a reversal: the transaction it reverses.
    original: str | None = None
    # The transaction id of each answer that carried one: all the same, if keys work.
    transaction_ids: list[str] = field(default_factory=list)
    # The transaction's status in each of those answers: once final, never another.
    statuses: list[str] = field(default_factory=list)
    # The error codes of each answer that refused it.
    refusals: list[str] = field(default_factory=list)
    attempts: int = 0
    failed_attempts: int = 0

    @property
    def input(self) -> dict[str, str]:
        if self.operation == "reverse":
            return {
                "transactionId": str(self.original),
                "amount": self.amount,
                "clientTransactionId": self.key,
            }
        if self.operation == "transfer":
            return {
                "fromWalletId": self.wallet,
                "toWalletId": str(self.receiver),
                "amount": self.amount,
                "clientTransactionId": self.key,
            }
        return {"walletId": self.wallet, "amount": self.amount, "clientTransactionId": self.key}

    @property
    def minor_units(self) -> int:
        return minor_units(self.amount)


def minor_units(amount: str) -> int:
    """Cents of a USD amount as the API writes it, "12.50" -> 1250 (every wallet here is USD)."""
    return int(Decimal(amount).scaleb(2))


async def post(client: httpx.AsyncClient, url: str, query: str, **variables: Any) -> Any:
    """The `data` of a request that got a GraphQL answer, else Unanswered."""
    try:
        response = await client.post(url, json={"query": query, "variables": variables})
    except httpx.HTTPError as error:
        raise Unanswered(f"{type(error).__name__}: {error}") from error
    if response.status_code != 200:
        raise Unanswered(f"HTTP {response.status_code}: {response.text[:200]}")
    body = response.json()
    if body.get("errors") or body.get("data") is None:
        raise Unanswered(f"GraphQL errors: {body.get('errors')}")
    return body["data"]


async def create_wallets(url: str, count: int, balance: str) -> list[str]:
    async with httpx.AsyncClient(timeout=30, headers=tokens.header()) as client:

        async def one() -> str:
            data = await post(
                client,
                url,
                _CREATE_WALLET,
                input={"initialBalance": balance, "clientTransactionId": f"wallet-{uuid.uuid4()}"},
            )
            assert data["createWallet"]["errors"] == [], data
            return str(data["createWallet"]["wallet"]["id"])

        made: list[str] = []
        while len(made) < count:  # 50 at a time: more would only queue for connections
            made += await asyncio.gather(*(one() for _ in range(min(50, count - len(made)))))
        return made


class Load:
    """`clients` clients sending requests until stop(), each retrying what went unanswered."""

    def __init__(self, url: str, wallets: list[str], *, clients: int = 24, seed: int = 1) -> None:
        self.url = url
        self.wallets = wallets
        self.clients = clients
        self.requests: list[Request] = []
        self.resends = 0
        # When each attempt was answered, and when each one failed (time.monotonic()).
        self.answered_at: list[float] = []
        self.failed_at: list[float] = []
        self._seed = seed
        self.started = self.stopped = 0.0
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, connect=2.0),
            limits=httpx.Limits(max_connections=clients, max_keepalive_connections=clients),
            headers=tokens.header(),
        )

    def start(self) -> None:
        self.started = time.monotonic()
        self._tasks = [
            asyncio.create_task(self._client(random.Random(self._seed * 1000 + n)))
            for n in range(self.clients)
        ]

    async def stop(self) -> None:
        """Stop sending new requests; wait until every one sent has been answered."""
        self._stopping.set()
        try:
            for task in asyncio.as_completed(self._tasks):
                await task  # the first client that failed says why
        except BaseException:
            await self.abort()
            raise
        finally:
            self.stopped = time.monotonic()
            await self._http.aclose()

    async def abort(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.stopped = self.stopped or time.monotonic()
        await self._http.aclose()

    async def wait_for(self, what: str, condition: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            for task in self._tasks:
                if task.done():
                    task.result()  # a client that died says why
            assert time.monotonic() < deadline, f"{what}: not after {timeout} s"
            await asyncio.sleep(0.05)

    async def answers(self, count: int, *, after: float = 0.0, timeout: float = 60.0) -> None:
        """Wait until `count` attempts have been answered since the moment `after`."""
        await self.wait_for(
            f"{count} answers",
            lambda: sum(1 for t in self.answered_at if t >= after) >= count,
            timeout,
        )

    def first_answer_after(self, moment: float) -> float | None:
        return min((t for t in self.answered_at if t >= moment), default=None)

    async def _client(self, rng: random.Random) -> None:
        mine: list[Request] = []
        while not self._stopping.is_set():
            roll = rng.randrange(100)
            answered = [r for r in mine if r.transaction_ids]
            if roll < _RESENDS and answered:
                self.resends += 1
                await self._send(rng.choice(answered))
                continue
            transfers = [r for r in mine[:-_REVERSAL_AGE] if r.operation == "transfer"]
            sent = [r for r in transfers if r.transaction_ids]
            if roll >= 100 - _REVERSALS and sent:
                request = self._reversal(rng, rng.choice(sent))
            else:
                request = self._new(rng, roll)
            mine.append(request)
            self.requests.append(request)
            await self._send(request)

    def _new(self, rng: random.Random, roll: int) -> Request:
        amount = f"{rng.randint(1, 2500) / 100:.2f}"
        key = f"faults-{uuid.uuid4()}"
        if roll < _RESENDS + _DEPOSITS:
            return Request("deposit", key, amount, rng.choice(self.wallets))
        if roll < _RESENDS + _DEPOSITS + _WITHDRAWALS:
            return Request("withdraw", key, amount, rng.choice(self.wallets))
        sender, receiver = rng.sample(self.wallets, 2)
        return Request("transfer", key, amount, sender, receiver)

    def _reversal(self, rng: random.Random, transfer: Request) -> Request:
        """A refund of part of `transfer`: from its receiver back to its sender."""
        cents = rng.randint(1, transfer.minor_units)
        return Request(
            "reverse",
            f"faults-{uuid.uuid4()}",
            f"{cents / 100:.2f}",
            str(transfer.receiver),
            transfer.wallet,
            original=transfer.transaction_ids[0],
        )

    async def _send(self, request: Request) -> None:
        give_up = time.monotonic() + GIVE_UP_SECONDS
        pause = 0.05
        while True:
            request.attempts += 1
            try:
                data = await post(
                    self._http, self.url, MUTATIONS[request.operation], input=request.input
                )
            except Unanswered as why:
                request.failed_attempts += 1
                self.failed_at.append(time.monotonic())
                if time.monotonic() > give_up:
                    raise AssertionError(
                        f"no answer for {request} in {GIVE_UP_SECONDS} s: {why}"
                    ) from why
                await asyncio.sleep(pause * random.uniform(0.5, 1.5))
                pause = min(pause * 2, 1.0)
                continue
            self.answered_at.append(time.monotonic())
            payload = data[FIELDS[request.operation]]
            if payload["transaction"] is not None:
                request.transaction_ids.append(payload["transaction"]["id"])
                request.statuses.append(payload["transaction"]["status"])
            else:
                request.refusals.extend(error["code"] for error in payload["errors"])
            return
