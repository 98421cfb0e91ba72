"""`wallet audit` on a ledger written by the use cases: clean as written, and each tampering
done behind the service's back in SQL found by the check that should find it.

Every test has a database of its own, copied from one migrated template: tampering is the
point here, and the run's shared database is audited whole after the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID, uuid4

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.callers import ADMIN
from tests.integration.moves import (
    capture_hold,
    fresh_key,
    new_wallet,
    place_hold,
    transfer,
    void_hold,
    withdraw,
)
from tests.invariants import assert_audit_clean
from wallet.domain import services
from wallet.domain.group_commit import run_alone
from wallet.domain.model import TransactionStatus
from wallet.persistence import audit as checks
from wallet.persistence.audit import AuditReport, audit
from wallet.persistence.database import create_database, create_engine, drop_database, migrate
from wallet.persistence.unit_of_work import SqlUnitOfWork

pytestmark = pytest.mark.timeout(60)

FIVE_MINUTES = timedelta(minutes=5)


def _url(database_url: str, name: str) -> str:
    return make_url(database_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="module")
async def template(database_url: str) -> AsyncIterator[str]:
    name = f"{make_url(database_url).database}_audit"
    await migrate(_url(database_url, name))
    yield name
    await drop_database(_url(database_url, name))


@pytest.fixture
async def own_database(database_url: str, template: str) -> AsyncIterator[str]:
    """A migrated database of this test's own, dropped after it."""
    name = f"{template}_{uuid4().hex[:8]}"
    admin = await asyncpg.connect(_url(database_url, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await admin.close()
    yield _url(database_url, name)
    await drop_database(_url(database_url, name))


@pytest.fixture
async def engine_(own_database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(own_database, pool_size=4)
    yield engine
    await engine.dispose()


@dataclass(frozen=True)
class Ledger:
    alice: UUID
    bob: UUID
    carol: UUID
    # A transfer from alice to bob, COMPLETED.
    transfer: UUID
    # The wallet whose money an ACTIVE hold reserves.
    holding: UUID


@pytest.fixture
async def ledger(engine_: AsyncEngine) -> Ledger:
    """Deposits, transfers, withdrawals (one FAILED), holds captured, voided and ACTIVE:
    everything through the use cases, as the API does it."""

    def uow_factory() -> SqlUnitOfWork:
        return SqlUnitOfWork(engine_)

    alice = (await new_wallet(uow_factory, "100.00")).id
    bob = (await new_wallet(uow_factory, "50.00")).id
    carol = (await new_wallet(uow_factory)).id
    await run_alone(
        uow_factory, services.deposit, ADMIN, services.Deposit(str(carol), "5.00", fresh_key())
    )
    moved = await transfer(uow_factory, alice, bob, "30.00")
    assert moved.status is TransactionStatus.COMPLETED
    await transfer(uow_factory, bob, carol, "12.50")
    await withdraw(uow_factory, alice, "10.00")
    failed = await withdraw(uow_factory, carol, "1000.00")
    assert failed.status is TransactionStatus.FAILED
    captured = await place_hold(uow_factory, bob, "7.00", receiver=carol)
    await capture_hold(uow_factory, captured.id, "5.00")
    await void_hold(uow_factory, (await place_hold(uow_factory, alice, "3.00")).id)
    await place_hold(uow_factory, alice, "4.00")
    return Ledger(alice, bob, carol, moved.id, holding=alice)


async def _run_sql(engine: AsyncEngine, statement: str, **params: object) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(statement), params)


def _failed(report: AuditReport) -> dict[str, list[str]]:
    """Each failing check's name, with the subjects of what it found."""
    return {c.name: [d.subject for d in c.shown] for c in report.checks if not c.ok}


async def _middle_entry(engine: AsyncEngine, wallet: UUID) -> tuple[int, UUID]:
    """The id and transaction of an entry of the wallet that is neither its first nor last."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT id, transaction_id FROM ledger_entries WHERE wallet_id = :w "
                    "ORDER BY created_at, id"
                ),
                {"w": wallet},
            )
        ).all()
    assert len(rows) >= 3
    return int(rows[1][0]), rows[1][1]


async def test_a_ledger_written_by_the_use_cases_passes_every_check(
    engine_: AsyncEngine, ledger: Ledger
) -> None:
    report = await assert_audit_clean(engine_, pending_after=FIVE_MINUTES)

    covered = {c.name: {noun: n for n, noun in c.covered} for c in report.checks}
    assert covered[checks.SUM] == {"wallets": 3, "entries": 10}
    assert covered[checks.HELD]["ACTIVE holds"] == 1
    (usd,) = report.money
    # 100 + 50 + 5 in, 10 out by withdrawal, 5 out by the capture of a hold with no receiver
    # (none here: the capture went to carol).
    assert (usd.deposits, usd.withdrawals, usd.balances) == (155_00, 10_00, 145_00)
    assert "balances 14,500 = deposits 15,500 - withdrawals 1,000" in "\n".join(report.lines())


async def test_a_balance_changed_in_sql_is_found(engine_: AsyncEngine, ledger: Ledger) -> None:
    await _run_sql(
        engine_, "UPDATE wallets SET balance = balance + 100 WHERE id = :w", w=ledger.bob
    )

    failed = _failed(await audit(engine_, pending_after=FIVE_MINUTES))

    assert failed[checks.SUM] == [f"wallet {ledger.bob}"]
    assert failed[checks.CHAIN] == [f"wallet {ledger.bob}"]  # its last entry no longer says it
    assert failed[checks.MONEY] == ["USD"]
    assert set(failed) == {checks.SUM, checks.CHAIN, checks.MONEY}


async def test_an_entry_whose_balance_after_does_not_follow_is_found(
    engine_: AsyncEngine, ledger: Ledger
) -> None:
    entry, _ = await _middle_entry(engine_, ledger.alice)
    await _run_sql(
        engine_,
        "UPDATE ledger_entries SET balance_after = balance_after + 1 WHERE id = :e",
        e=entry,
    )

    report = await audit(engine_, pending_after=FIVE_MINUTES)

    assert _failed(report) == {checks.CHAIN: [f"wallet {ledger.alice}"]}
    (chain,) = [c for c in report.checks if c.name == checks.CHAIN]
    # Both the entry and the one after it no longer follow from the one before.
    assert chain.shown[0].problem.startswith(
        f"2 of its entries do not follow from the one before; the first, entry {entry},"
    )


async def test_an_entry_deleted_is_found_by_its_wallet_and_its_transaction(
    engine_: AsyncEngine, ledger: Ledger
) -> None:
    entry, transaction = await _middle_entry(engine_, ledger.bob)
    await _run_sql(engine_, "DELETE FROM ledger_entries WHERE id = :e", e=entry)

    failed = _failed(await audit(engine_, pending_after=FIVE_MINUTES))

    assert failed[checks.SUM] == [f"wallet {ledger.bob}"]
    assert failed[checks.CHAIN] == [f"wallet {ledger.bob}"]
    assert failed[checks.ENTRIES] == [f"transaction {transaction}"]
    assert set(failed) == {checks.SUM, checks.CHAIN, checks.ENTRIES}


async def test_a_completed_transaction_without_entries_is_found(
    engine_: AsyncEngine, ledger: Ledger
) -> None:
    await _run_sql(
        engine_, "DELETE FROM ledger_entries WHERE transaction_id = :t", t=ledger.transfer
    )
    await _run_sql(
        engine_,
        # Each wallet's balance and remaining entries made to agree again: only the
        # transaction's own entries are missing.
        """
        UPDATE ledger_entries e SET balance_after = running FROM (
          SELECT id, sum(delta) OVER (PARTITION BY wallet_id ORDER BY created_at, id) AS running
          FROM ledger_entries) AS r WHERE r.id = e.id;
        """,
    )
    await _run_sql(
        engine_,
        "UPDATE wallets w SET balance = coalesce((SELECT sum(delta) FROM ledger_entries e "
        "WHERE e.wallet_id = w.id), 0), held = 0",
    )
    await _run_sql(
        engine_, "UPDATE holds SET status = 'VOIDED', closed_at = now() WHERE status = 'ACTIVE'"
    )

    report = await audit(engine_, pending_after=FIVE_MINUTES)

    assert _failed(report) == {checks.ENTRIES: [f"transaction {ledger.transfer}"]}
    (entries,) = [c for c in report.checks if c.name == checks.ENTRIES]
    assert "has 0 entries, where 2 belong" in entries.shown[0].problem


async def test_a_transaction_pending_longer_than_the_threshold_is_found(
    engine_: AsyncEngine, ledger: Ledger
) -> None:
    stuck = uuid4()
    await _run_sql(
        engine_,
        "INSERT INTO transactions (id, type, status, amount, currency, sender_wallet_id, "
        "created_at) VALUES (:id, 'WITHDRAWAL', 'PENDING', 100, 'USD', :w, "
        "now() - interval '6 minutes')",
        id=stuck,
        w=ledger.carol,
    )

    failed = _failed(await audit(engine_, pending_after=FIVE_MINUTES))
    skipped = await audit(engine_, pending_after=None)
    patient = await audit(engine_, pending_after=timedelta(minutes=10))

    assert failed == {"nothing PENDING over 300 s": [f"transaction {stuck}"]}
    assert skipped.discrepancies == 0
    assert patient.discrepancies == 0


async def test_money_created_from_nothing_is_found_though_the_wallet_s_ledger_agrees(
    engine_: AsyncEngine, ledger: Ledger
) -> None:
    # The last entry of carol and her balance raised together: her entries still sum to her
    # balance, each following from the one before.
    await _run_sql(
        engine_,
        """
        WITH last AS (
          SELECT id FROM ledger_entries WHERE wallet_id = :w ORDER BY created_at DESC, id DESC
          LIMIT 1
        )
        UPDATE ledger_entries e SET delta = delta + 1000, balance_after = balance_after + 1000
        FROM last WHERE e.id = last.id
        """,
        w=ledger.carol,
    )
    await _run_sql(
        engine_, "UPDATE wallets SET balance = balance + 1000 WHERE id = :w", w=ledger.carol
    )

    failed = _failed(await audit(engine_, pending_after=FIVE_MINUTES))

    assert set(failed) == {checks.ENTRIES, checks.MONEY}
    assert failed[checks.MONEY] == ["USD"]


async def test_held_that_its_active_holds_do_not_explain_is_found(
    engine_: AsyncEngine, ledger: Ledger
) -> None:
    # The hold ended, its money not released.
    await _run_sql(
        engine_,
        "UPDATE holds SET status = 'VOIDED', closed_at = now() "
        "WHERE wallet_id = :w AND status = 'ACTIVE'",
        w=ledger.holding,
    )

    report = await audit(engine_, pending_after=FIVE_MINUTES)

    assert _failed(report) == {checks.HELD: [f"wallet {ledger.holding}"]}
    (held,) = [c for c in report.checks if c.name == checks.HELD]
    assert held.shown[0].problem == "held 400, but its 0 ACTIVE holds reserve 0"


async def test_a_negative_balance_is_found_where_the_constraint_was_dropped(
    engine_: AsyncEngine, ledger: Ledger
) -> None:
    await _run_sql(engine_, "ALTER TABLE wallets DROP CONSTRAINT held_within_balance")
    await _run_sql(engine_, "UPDATE wallets SET held = balance + 1 WHERE id = :w", w=ledger.bob)

    failed = _failed(await audit(engine_, pending_after=FIVE_MINUTES))

    assert failed[checks.NEGATIVE] == [f"wallet {ledger.bob}"]


async def test_a_reversal_is_counted_in_the_money_and_held_to_its_original(
    engine_: AsyncEngine, ledger: Ledger
) -> None:
    # Carol's deposit of 5.00 reversed by 2.00, written as the ledger writes a reversal: its
    # entry, her balance, and what the original has given back.
    reversal = uuid4()
    await _run_sql(
        engine_,
        """
        WITH original AS (
          SELECT id FROM transactions WHERE type = 'DEPOSIT' AND receiver_wallet_id = :w
            AND amount = 500
        ),
        reversal AS (
          INSERT INTO transactions (id, type, status, amount, currency, sender_wallet_id,
            reversal_of, completed_at)
          SELECT :r, 'REVERSAL', 'COMPLETED', 200, 'USD', :w, id, clock_timestamp()
          FROM original RETURNING id
        ),
        claimed AS (UPDATE transactions SET reversal_claimed = 200, reversal_count = 1
          WHERE id IN (SELECT id FROM original)),
        wallet AS (UPDATE wallets SET balance = balance - 200 WHERE id = :w RETURNING balance)
        INSERT INTO ledger_entries (transaction_id, wallet_id, delta, balance_after)
        SELECT reversal.id, :w, -200, wallet.balance FROM reversal, wallet
        """,
        w=ledger.carol,
        r=reversal,
    )

    report = await assert_audit_clean(engine_, pending_after=FIVE_MINUTES)
    (usd,) = report.money
    assert (usd.reversed_out, usd.reversed_in, usd.balances) == (200, 0, 143_00)

    await _run_sql(
        engine_,
        "UPDATE transactions SET reversal_claimed = 0 WHERE id IN "
        "(SELECT reversal_of FROM transactions WHERE id = :r)",
        r=reversal,
    )
    failed = _failed(await audit(engine_, pending_after=FIVE_MINUTES))
    assert list(failed) == [checks.REVERSALS]


async def test_the_command_exits_0_on_a_clean_ledger_and_1_printing_what_it_found(
    engine_: AsyncEngine, ledger: Ledger, own_database: str
) -> None:
    env = {**os.environ, "DATABASE_URL": own_database}
    command = [sys.executable, "-m", "wallet.cli", "audit"]

    clean = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    await _run_sql(
        engine_, "UPDATE wallets SET balance = balance + 1 WHERE id = :w", w=ledger.alice
    )
    tampered = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)

    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.rstrip().splitlines()[-1].startswith("wallet audit: no discrepancies")
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert f"wallet {ledger.alice}: balance 6001, but its" in tampered.stdout
    assert "discrepancies in 3 of 8 checks" in tampered.stdout


@pytest.mark.parametrize("missing", ["the database", "its tables"])
async def test_the_command_exits_2_with_one_line_when_the_ledger_cannot_be_read(
    database_url: str, missing: str
) -> None:
    name = f"{make_url(database_url).database}_audit_{uuid4().hex[:8]}"
    url = _url(database_url, name)
    if missing == "its tables":
        await create_database(url)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "wallet.cli", "audit"],
            env={**os.environ, "DATABASE_URL": url},
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        await drop_database(url)

    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("wallet audit: PostgreSQL at ")
    assert ("wallet migrate" in line) == (missing == "its tables")


async def test_the_command_exits_2_not_1_when_its_role_may_not_read_a_table(
    engine_: AsyncEngine, ledger: Ledger, own_database: str
) -> None:
    """A least-privilege audit role missing a grant is not a discrepancy in the ledger."""
    role = f"audit_{uuid4().hex[:8]}"
    await _run_sql(engine_, f"CREATE ROLE {role} LOGIN")
    await _run_sql(engine_, f"GRANT SELECT ON wallets, transactions, holds TO {role}")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "wallet.cli", "audit"],
            env={
                **os.environ,
                "DATABASE_URL": make_url(own_database)
                .set(username=role)
                .render_as_string(hide_password=False),
            },
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        await _run_sql(engine_, f"DROP OWNED BY {role}")
        await _run_sql(engine_, f"DROP ROLE {role}")

    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.splitlines()
    assert "refused a check" in line
    assert "permission denied" in line
