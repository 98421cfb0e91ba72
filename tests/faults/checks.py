"""What must hold after every fault, once the load has stopped and the workers caught up: the
money rules in PostgreSQL (tests/invariants.py, shared with the other suites), every request as
its client saw it, and the API telling the same story as the tables."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests import tokens
from tests.faults.load import Load, Request, minor_units, post
from tests.invariants import LedgerFigures, assert_audit_clean, assert_ledger_holds
from tests.waits import eventually

_TYPES = {
    "deposit": "DEPOSIT",
    "withdraw": "WITHDRAWAL",
    "transfer": "TRANSFER",
    "reverse": "REVERSAL",
}
# What may refuse a request, besides a lack of money: a refund of a transfer not yet settled,
# or of more than is left of it.
_REFUSALS = {
    "reverse": {"INSUFFICIENT_FUNDS", "NOT_REVERSIBLE", "REVERSAL_EXCEEDS_ORIGINAL"},
}
# Aliases per read, under the API's alias limit.
_PER_READ = 25
_PENDING = text("SELECT count(*) FROM transactions WHERE status = 'PENDING'")


async def wait_quiet(engine: AsyncEngine, timeout: float) -> None:
    """Until nothing is PENDING: the workers have settled what the load left behind."""

    async def quiet() -> bool:
        async with engine.connect() as conn:
            return (await conn.execute(_PENDING)).scalar_one() == 0

    await eventually(quiet, "nothing PENDING", timeout, every=0.2)


async def assert_all_holds(engine: AsyncEngine, url: str, load: Load) -> LedgerFigures:
    figures = await assert_ledger_holds(engine)
    # The scenario's own database, quiet: nothing may be PENDING at all.
    await assert_audit_clean(engine, pending_after=timedelta(0))
    await assert_requests_kept(engine, load.requests)
    await assert_api_agrees(engine, url, load.requests)
    return figures


async def assert_requests_kept(engine: AsyncEngine, requests: list[Request]) -> None:
    """Each request recorded once, as asked, under the id its client was given every time it
    asked; a refused request recorded nothing; no transaction that no client asked for."""
    keys = [r.key for r in requests]
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    """
                    SELECT client_transaction_id, id::text, type, amount,
                           sender_wallet_id::text, receiver_wallet_id::text, status,
                           failure_code, reversal_of::text
                    FROM transactions
                    """
                )
            )
        ).all()
    recorded: dict[str, list[tuple[object, ...]]] = {}
    for row in rows:
        recorded.setdefault(row[0], []).append(tuple(row[1:]))
    # Besides the load's: each wallet's opening deposit, and a scenario's own transfers.
    strays = {k for k in recorded if not k or not k.startswith(("wallet-", "watched-"))}
    assert strays <= set(keys), "every transaction was asked for by a client"
    for request in requests:
        assert request.transaction_ids or request.refusals, f"never answered: {request}"
        found = recorded.get(request.key, [])
        if request.refusals:
            assert not request.transaction_ids, f"both refused and accepted: {request}"
            assert found == [], f"a refused request recorded something: {request} {found}"
            allowed = _REFUSALS.get(request.operation, {"INSUFFICIENT_FUNDS"})
            assert set(request.refusals) <= allowed, request
            continue
        assert len(set(request.transaction_ids)) == 1, f"a re-send got another id: {request}"
        assert len(found) == 1, f"recorded {len(found)} times: {request}"
        (transaction_id, kind, amount, sender, receiver, status, failure_code, original) = found[0]
        assert transaction_id == request.transaction_ids[0], request
        assert kind == _TYPES[request.operation], request
        assert amount == request.minor_units, request
        assert original == request.original, request
        if request.operation == "deposit":
            assert (sender, receiver) == (None, request.wallet), request
        elif request.operation == "withdraw":
            assert (sender, receiver) == (request.wallet, None), request
        else:
            assert (sender, receiver) == (request.wallet, request.receiver), request
        seen_final = {s for s in request.statuses if s != "PENDING"}
        assert seen_final <= {status}, f"a final status changed to {status}: {request}"
        # A fault must not fail a payment: only a lack of money may.
        assert failure_code in (None, "INSUFFICIENT_FUNDS"), (request, failure_code)


async def assert_api_agrees(engine: AsyncEngine, url: str, requests: list[Request]) -> None:
    """Balances and statuses read through the API (and its cache) equal the tables'."""
    async with engine.connect() as conn:
        balances = {
            wallet: int(balance)
            for wallet, balance in (
                await conn.execute(text("SELECT id::text, balance FROM wallets"))
            ).all()
        }
        statuses = dict(
            (
                await conn.execute(
                    text(
                        "SELECT id::text, status FROM transactions "
                        "WHERE client_transaction_id LIKE 'faults-%'"
                    )
                )
            ).all()
        )
    assert len(statuses) == sum(1 for r in requests if r.transaction_ids)
    async with httpx.AsyncClient(timeout=30, headers=tokens.header()) as client:
        seen_balances = await _read_aliased(client, url, "wallet", "balance", list(balances))
        seen_statuses = await _read_aliased(client, url, "transaction", "status", list(statuses))
    assert {w: minor_units(b) for w, b in seen_balances.items()} == balances
    assert seen_statuses == statuses


async def _read_aliased(
    client: httpx.AsyncClient, url: str, field: str, attribute: str, ids: list[str]
) -> dict[str, str]:
    seen: dict[str, str] = {}
    for start in range(0, len(ids), _PER_READ):
        chunk = ids[start : start + _PER_READ]
        query = "{ " + " ".join(
            f'a{n}: {field}(id: "{i}") {{ id {attribute} }}' for n, i in enumerate(chunk)
        )
        data = await post(client, url, query + " }")
        seen.update({node["id"]: node[attribute] for node in data.values()})
    return seen
