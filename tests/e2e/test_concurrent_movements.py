"""Many clients moving money at once over HTTP: no 5xx, no negative balance, no cent lost or
doubled. (The same races on the service layer alone: integration/test_concurrent_movements.)"""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.client import Api
from tests.invariants import assert_balances_explained


async def test_100_concurrent_transfers_among_4_wallets_conserve_every_cent(
    api: Api, engine: AsyncEngine
) -> None:
    wallets = [await api.new_wallet("50.00") for _ in range(4)]
    rng = random.Random(4)
    moves = []
    for _ in range(50):
        # Each pair in both directions at once, the pattern that deadlocks careless locking.
        a, b = rng.sample(wallets, 2)
        amount = f"{rng.randint(1, 3000) / 100:.2f}"
        moves += [(a, b, amount), (b, a, amount)]

    results = await asyncio.gather(
        *(api.transfer(sender, receiver, amount) for sender, receiver, amount in moves),
        return_exceptions=True,
    )

    assert [r for r in results if isinstance(r, BaseException)] == []
    payloads: list[dict[str, Any]] = [r for r in results if isinstance(r, dict)]

    assert [p["errors"] for p in payloads] == [[]] * 100
    outcomes = {(p["transaction"]["status"], p["transaction"]["failureCode"]) for p in payloads}
    assert outcomes <= {("COMPLETED", None), ("FAILED", "INSUFFICIENT_FUNDS")}
    balances = [Decimal(await api.balance(w)) for w in wallets]
    assert all(b >= 0 for b in balances)
    assert sum(balances) == Decimal("200.00")
    expected = dict.fromkeys(wallets, Decimal("50.00"))
    for p in payloads:
        t = p["transaction"]
        if t["status"] == "COMPLETED":
            expected[t["senderWallet"]["id"]] -= Decimal(t["amount"])
            expected[t["receiverWallet"]["id"]] += Decimal(t["amount"])
    assert balances == [expected[w] for w in wallets]
    in_minor = await assert_balances_explained(engine, wallets)
    assert [in_minor[w] for w in wallets] == [int(b * 100) for b in balances]


async def test_concurrent_withdrawals_over_http_never_overdraw(
    api: Api, engine: AsyncEngine
) -> None:
    wallet = await api.new_wallet("10.00")

    payloads = await asyncio.gather(*(api.withdraw(wallet, "3.00") for _ in range(20)))

    statuses = sorted(p["transaction"]["status"] for p in payloads)
    assert statuses == ["COMPLETED"] * 3 + ["FAILED"] * 17
    assert await api.balance(wallet) == "1.00"
    await assert_balances_explained(engine, [wallet])
