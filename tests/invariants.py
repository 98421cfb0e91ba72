"""What must hold in PostgreSQL whatever the requests did, read straight from the tables."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from wallet.persistence.audit import AuditReport, audit

LEDGER_TABLES = ("wallets", "transactions", "ledger_entries", "idempotency_keys")


@dataclass(frozen=True)
class TableState:
    rows: int
    checksum: str


async def snapshot(engine: AsyncEngine) -> dict[str, TableState]:
    """Row count and a digest of every row of every ledger table.

    Two equal snapshots mean nothing was inserted, updated or deleted in between; a
    version bump or a touched `updated_at` changes the digest too.
    """
    states = {}
    async with engine.connect() as conn:
        for table in LEDGER_TABLES:
            rows, checksum = (
                await conn.execute(
                    text(
                        f"SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n' "
                        f"ORDER BY t::text)), '') FROM {table} AS t"
                    )
                )
            ).one()
            states[table] = TableState(rows, checksum)
    return states


@dataclass(frozen=True)
class WalletLedger:
    balance: int
    entries: int
    completed: int


async def wallet_ledgers(
    engine: AsyncEngine, wallet_ids: Iterable[UUID | str]
) -> dict[str, WalletLedger]:
    """Each wallet's balance, the sum of its ledger entries, and the net of its COMPLETED
    transactions, all in minor units."""
    ids = [str(i) for i in wallet_ids]
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    """
                    SELECT w.id::text, w.balance,
                      (SELECT coalesce(sum(e.delta), 0) FROM ledger_entries e
                       WHERE e.wallet_id = w.id),
                      (SELECT coalesce(sum(CASE WHEN t.receiver_wallet_id = w.id THEN t.amount
                                                ELSE -t.amount END), 0)
                       FROM transactions t
                       WHERE t.status = 'COMPLETED'
                         AND (t.sender_wallet_id = w.id OR t.receiver_wallet_id = w.id))
                    FROM wallets w WHERE w.id = ANY(CAST(:ids AS uuid[]))
                    """
                ),
                {"ids": ids},
            )
        ).all()
    found = {row[0]: WalletLedger(int(row[1]), int(row[2]), int(row[3])) for row in rows}
    assert sorted(found) == sorted(ids), "every wallet asked for exists"
    return found


async def assert_balances_explained(
    engine: AsyncEngine, wallet_ids: Iterable[UUID | str]
) -> dict[str, int]:
    """Every balance is >= 0 and equals both its ledger entries and its COMPLETED
    transactions; each entry's `balance_after` is the running balance after it, so the last
    one is the balance; every COMPLETED transaction has one entry per wallet it touches and
    no other transaction has any. Returns the balances."""
    ids = [str(i) for i in wallet_ids]
    ledgers = await wallet_ledgers(engine, ids)
    for wallet_id, ledger in ledgers.items():
        assert ledger.balance >= 0, (wallet_id, ledger)
        assert ledger.balance == ledger.entries == ledger.completed, (wallet_id, ledger)
    async with engine.connect() as conn:
        mismatched = (
            await conn.execute(
                text(
                    """
                    SELECT t.id, t.type, t.status, count(e.id)
                    FROM transactions t LEFT JOIN ledger_entries e ON e.transaction_id = t.id
                    GROUP BY t.id
                    HAVING count(e.id) <> CASE WHEN t.status <> 'COMPLETED' THEN 0
                        ELSE (t.sender_wallet_id IS NOT NULL)::int
                            + (t.receiver_wallet_id IS NOT NULL)::int END
                    """
                )
            )
        ).all()
        # Entries are numbered in the order they were written; a wallet's rows are locked
        # while its entries are written, so that order is the order of its balances.
        wrong_running_balance = (
            await conn.execute(
                text(
                    """
                    SELECT wallet_id, id, delta, balance_after, running FROM (
                        SELECT e.*, sum(e.delta) OVER (PARTITION BY e.wallet_id ORDER BY e.id)
                            AS running
                        FROM ledger_entries e WHERE e.wallet_id = ANY(CAST(:ids AS uuid[]))
                    ) AS entries
                    WHERE balance_after <> running
                    LIMIT 10
                    """
                ),
                {"ids": ids},
            )
        ).all()
        last_not_balance = (
            await conn.execute(
                text(
                    """
                    SELECT w.id, w.balance, last.balance_after FROM wallets w
                    JOIN LATERAL (
                        SELECT balance_after FROM ledger_entries e WHERE e.wallet_id = w.id
                        ORDER BY e.id DESC LIMIT 1
                    ) AS last ON true
                    WHERE w.id = ANY(CAST(:ids AS uuid[])) AND last.balance_after <> w.balance
                    """
                ),
                {"ids": ids},
            )
        ).all()
    assert mismatched == []
    assert wrong_running_balance == [], "balance_after is the running balance"
    assert last_not_balance == [], "the last entry's balance_after is the balance"
    return {wallet_id: ledger.balance for wallet_id, ledger in ledgers.items()}


@dataclass(frozen=True)
class WalletHolds:
    balance: int
    held: int
    # The sum of the amounts of its ACTIVE holds.
    active: int


async def assert_holds_explained(
    engine: AsyncEngine, wallet_ids: Iterable[UUID | str]
) -> dict[str, WalletHolds]:
    """Every wallet's held total is what its ACTIVE holds reserve, within 0 and its balance.
    Every CAPTURED hold was captured by exactly one COMPLETED transaction naming it, of the
    captured amount, from its wallet to its receiver (out when it has none); no transaction
    names a hold that is not CAPTURED. Returns each wallet's figures."""
    ids = [str(i) for i in wallet_ids]
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    """
                    SELECT w.id::text, w.balance, w.held,
                      (SELECT coalesce(sum(h.amount), 0) FROM holds h
                       WHERE h.wallet_id = w.id AND h.status = 'ACTIVE')
                    FROM wallets w WHERE w.id = ANY(CAST(:ids AS uuid[]))
                    """
                ),
                {"ids": ids},
            )
        ).all()
        wrong_captures = (
            await conn.execute(
                text(
                    """
                    SELECT h.id, h.status, h.captured_amount, h.capture_transaction_id,
                      count(t.id), array_agg(t.id)
                    FROM holds h LEFT JOIN transactions t ON t.hold_id = h.id
                    WHERE h.wallet_id = ANY(CAST(:ids AS uuid[]))
                    GROUP BY h.id
                    HAVING count(t.id) <> CASE WHEN h.status = 'CAPTURED' THEN 1 ELSE 0 END
                      OR (h.status = 'CAPTURED' AND NOT bool_and(
                        t.id = h.capture_transaction_id AND t.status = 'COMPLETED'
                        AND t.amount = h.captured_amount AND t.currency = h.currency
                        AND t.sender_wallet_id = h.wallet_id
                        AND t.receiver_wallet_id IS NOT DISTINCT FROM h.receiver_wallet_id))
                    LIMIT 10
                    """
                ),
                {"ids": ids},
            )
        ).all()
    found = {row[0]: WalletHolds(int(row[1]), int(row[2]), int(row[3])) for row in rows}
    assert sorted(found) == sorted(ids), "every wallet asked for exists"
    for wallet_id, holds in found.items():
        assert 0 <= holds.held <= holds.balance, (wallet_id, holds)
        assert holds.held == holds.active, ("held is what ACTIVE holds reserve", wallet_id, holds)
    assert wrong_captures == [], "a CAPTURED hold has one capture, and only it has one"
    return found


@dataclass(frozen=True)
class LedgerFigures:
    # The longest a withdrawal or transfer took from PENDING to its final status.
    slowest_settlement_seconds: float


async def assert_ledger_holds(engine: AsyncEngine) -> LedgerFigures:
    """The money rules over a whole database of a test's own, once it is quiet (no request
    in flight, the workers caught up), read straight from the tables.

    Money is conserved: what the wallets hold is what COMPLETED deposits (and reversals of
    withdrawals) brought in less what COMPLETED withdrawals (and reversals of deposits) took
    out. Every balance is explained by its entries (see
    assert_balances_explained, which the other suites use on their own wallets), and every
    wallet's held total by its ACTIVE holds (assert_holds_explained). No client key belongs
    to two transactions, every key recorded names a transaction, wallet or hold that exists,
    and nothing is PENDING.
    """
    async with engine.connect() as conn:
        wallet_ids = [row[0] for row in (await conn.execute(text("SELECT id FROM wallets"))).all()]
        held, deposited, withdrawn = (
            await conn.execute(
                text(
                    """
                    SELECT (SELECT coalesce(sum(balance), 0) FROM wallets),
                      -- Money from outside: deposits, and reversals of withdrawals; money
                      -- leaving: withdrawals, and reversals of deposits.
                      coalesce(sum(amount) FILTER (WHERE sender_wallet_id IS NULL), 0),
                      coalesce(sum(amount) FILTER (WHERE receiver_wallet_id IS NULL), 0)
                    FROM transactions WHERE status = 'COMPLETED'
                    """
                )
            )
        ).one()
        key_on_two = (
            await conn.execute(
                text(
                    """
                    SELECT client_transaction_id, count(*) FROM transactions
                    WHERE client_transaction_id IS NOT NULL
                    GROUP BY client_transaction_id HAVING count(*) > 1 LIMIT 10
                    """
                )
            )
        ).all()
        dangling_keys = (
            await conn.execute(
                text(
                    """
                    SELECT k.key FROM idempotency_keys k
                    WHERE (k.transaction_id IS NULL AND k.wallet_id IS NULL
                           AND k.hold_id IS NULL)
                       OR (k.transaction_id IS NOT NULL AND NOT EXISTS (
                           SELECT 1 FROM transactions t WHERE t.id = k.transaction_id))
                       OR (k.hold_id IS NOT NULL AND NOT EXISTS (
                           SELECT 1 FROM holds h WHERE h.id = k.hold_id))
                    LIMIT 10
                    """
                )
            )
        ).all()
        pending, slowest = (
            await conn.execute(
                text(
                    """
                    SELECT count(*) FILTER (WHERE status = 'PENDING'),
                      coalesce(extract(epoch FROM max(completed_at - created_at)
                                       FILTER (WHERE type <> 'DEPOSIT')), 0)
                    FROM transactions
                    """
                )
            )
        ).one()
    await assert_balances_explained(engine, wallet_ids)
    await assert_holds_explained(engine, wallet_ids)
    assert held == deposited - withdrawn, "money is conserved"
    assert key_on_two == [], "a client key names one transaction"
    assert dangling_keys == [], "every recorded key names what it recorded"
    assert pending == 0, f"{pending} transactions still PENDING"
    return LedgerFigures(float(slowest))


async def assert_audit_clean(
    engine: AsyncEngine, *, pending_after: timedelta | None = None
) -> AuditReport:
    """`wallet audit` over the whole database: every wallet's ledger, not only a test's own.
    Fails with the audit's report on any discrepancy.

    `pending_after` None skips the PENDING check: the run's shared database holds transactions
    other tests leave PENDING on purpose (submitted with no worker to settle them)."""
    report = await audit(engine, pending_after=pending_after)
    # The whole database: a discrepancy may be an earlier test's, found here first.
    assert report.discrepancies == 0, "wallet audit:\n" + "\n".join(report.lines())
    return report


async def transaction_rows(
    engine: AsyncEngine, where: str, **params: object
) -> list[dict[str, object]]:
    async with engine.connect() as conn:
        result = await conn.execute(text(f"SELECT * FROM transactions WHERE {where}"), params)
        return [dict(row) for row in result.mappings()]


async def status_counts(
    engine: AsyncEngine, transaction_ids: Iterable[UUID | str]
) -> dict[str, int]:
    """How many of the transactions are in each status."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT status, count(*) FROM transactions "
                "WHERE id = ANY(CAST(:ids AS uuid[])) GROUP BY status"
            ),
            {"ids": [str(i) for i in transaction_ids]},
        )
        return {str(status): int(count) for status, count in rows.all()}


@dataclass(frozen=True)
class Reversed:
    amount: int
    # What its PENDING and COMPLETED reversals take, as kept on its row.
    claimed: int
    # What its COMPLETED reversals returned.
    returned: int


async def assert_reversals_explained(
    engine: AsyncEngine, original_ids: Iterable[UUID | str]
) -> dict[str, Reversed]:
    """Each original's reversal_claimed is what its PENDING and COMPLETED reversals take,
    within its amount (a FAILED one gave its share back); every reversal of it is in its
    currency, with its wallets swapped (a transfer's money goes back from its receiver to
    its sender, a deposit's leaves its wallet, a withdrawal's comes back); only deposits,
    withdrawals and transfers are reversed. Returns each original's figures."""
    ids = [str(i) for i in original_ids]
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    """
                    SELECT o.id::text, o.amount, o.reversal_claimed,
                      coalesce(sum(r.amount) FILTER (WHERE r.status <> 'FAILED'), 0),
                      coalesce(sum(r.amount) FILTER (WHERE r.status = 'COMPLETED'), 0)
                    FROM transactions o LEFT JOIN transactions r ON r.reversal_of = o.id
                    WHERE o.id = ANY(CAST(:ids AS uuid[]))
                    GROUP BY o.id
                    """
                ),
                {"ids": ids},
            )
        ).all()
        misfits = (
            await conn.execute(
                text(
                    """
                    SELECT r.id, r.type, o.type, o.status FROM transactions r
                    JOIN transactions o ON o.id = r.reversal_of
                    WHERE o.id = ANY(CAST(:ids AS uuid[]))
                      AND (r.type <> 'REVERSAL' OR o.type = 'REVERSAL'
                           OR o.status <> 'COMPLETED' OR r.currency <> o.currency
                           OR r.sender_wallet_id IS DISTINCT FROM o.receiver_wallet_id
                           OR r.receiver_wallet_id IS DISTINCT FROM o.sender_wallet_id)
                    LIMIT 10
                    """
                ),
                {"ids": ids},
            )
        ).all()
    found = {row[0]: (int(row[1]), int(row[2]), int(row[3]), int(row[4])) for row in rows}
    assert sorted(found) == sorted(ids), "every original asked for exists"
    for original_id, (amount, claimed, live, returned) in found.items():
        assert claimed == live, ("claimed is what its live reversals take", original_id, claimed)
        assert 0 <= returned <= claimed <= amount, (original_id, amount, claimed, returned)
    assert misfits == [], "a reversal reverses a COMPLETED movement, its wallets swapped"
    return {i: Reversed(a, c, r) for i, (a, c, _, r) in found.items()}
