"""Statements and corrections: reversals, descriptions, and entries read by time.

A REVERSAL returns money of a COMPLETED deposit, withdrawal or transfer and names it
(`reversal_of`). What the original's reversals take of it, PENDING or COMPLETED (a FAILED one
gives its share back), is kept on the original (`reversal_claimed`), under the original's row
lock; PostgreSQL keeps it within the original's amount, so no two reversals, however
concurrent, return more than it moved.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels = None
depends_on = None

# As in 0004: a lock not had within LOCK_TIMEOUT fails the migration, to be run again. Once
# had, it is held to the end: `wallet migrate` runs every step in one transaction, so from the
# first ALTER on, `transactions` is closed to reads and writes until the new CHECKs have
# scanned it and the entries' index is built (3.1 s with a million transactions and a
# million entries, on 2 cores). On a large deployment, migrate at a quiet time. A downgrade
# forgets every description.
LOCK_TIMEOUT = "5s"

_UPGRADE = [
    "ALTER TABLE transactions ADD COLUMN description text"
    " CONSTRAINT description_length CHECK (char_length(description) <= 280)",
    "ALTER TABLE transactions ADD COLUMN reversal_of uuid REFERENCES transactions (id)",
    "ALTER TABLE transactions ADD COLUMN reversal_claimed bigint NOT NULL DEFAULT 0",
    "ALTER TABLE transactions ADD CONSTRAINT reversals_within_original"
    " CHECK (reversal_claimed >= 0 AND reversal_claimed <= amount)",
    # Reversals are listed under their original, unpaged: their number is bounded.
    "ALTER TABLE transactions ADD COLUMN reversal_count integer NOT NULL DEFAULT 0"
    " CONSTRAINT reversals_bounded CHECK (reversal_count >= 0 AND reversal_count <= 50)",
    "ALTER TABLE transactions DROP CONSTRAINT transactions_type_check",
    "ALTER TABLE transactions ADD CONSTRAINT transactions_type_check"
    " CHECK (type IN ('DEPOSIT', 'WITHDRAWAL', 'TRANSFER', 'REVERSAL'))",
    "ALTER TABLE transactions DROP CONSTRAINT wallets_fit_type",
    """
    ALTER TABLE transactions ADD CONSTRAINT wallets_fit_type CHECK (
        CASE type
            WHEN 'DEPOSIT' THEN sender_wallet_id IS NULL AND receiver_wallet_id IS NOT NULL
            WHEN 'WITHDRAWAL' THEN sender_wallet_id IS NOT NULL AND receiver_wallet_id IS NULL
            WHEN 'TRANSFER' THEN sender_wallet_id IS NOT NULL
                AND receiver_wallet_id IS NOT NULL
                AND sender_wallet_id <> receiver_wallet_id
            WHEN 'REVERSAL' THEN (sender_wallet_id IS NOT NULL OR receiver_wallet_id IS NOT NULL)
                AND sender_wallet_id IS DISTINCT FROM receiver_wallet_id
        END
    )
    """,
    "ALTER TABLE transactions ADD CONSTRAINT reversal_names_its_original"
    " CHECK ((type = 'REVERSAL') = (reversal_of IS NOT NULL))",
    # Transaction.reversals and reversedAmount, oldest first.
    "CREATE INDEX reversals_by_original ON transactions (reversal_of, created_at, id)"
    " WHERE reversal_of IS NOT NULL",
    # balanceAt, statements and Wallet.entries: one index lookup or one range scan by time.
    "CREATE INDEX ledger_entries_by_wallet_time ON ledger_entries (wallet_id, created_at, id)",
]

_DOWNGRADE = [
    "DROP INDEX ledger_entries_by_wallet_time",
    # Reversals have no place in the older schema, and deleting them would leave balances
    # their entries no longer explain: refuse rather than lose money's history.
    """
    DO $$ BEGIN
        IF EXISTS (SELECT 1 FROM transactions WHERE type = 'REVERSAL') THEN
            RAISE EXCEPTION 'reversals exist: this schema cannot be downgraded below 0006';
        END IF;
    END $$
    """,
    "DROP INDEX reversals_by_original",
    "ALTER TABLE transactions DROP CONSTRAINT reversal_names_its_original",
    "ALTER TABLE transactions DROP CONSTRAINT wallets_fit_type",
    """
    ALTER TABLE transactions ADD CONSTRAINT wallets_fit_type CHECK (
        CASE type
            WHEN 'DEPOSIT' THEN sender_wallet_id IS NULL AND receiver_wallet_id IS NOT NULL
            WHEN 'WITHDRAWAL' THEN sender_wallet_id IS NOT NULL AND receiver_wallet_id IS NULL
            WHEN 'TRANSFER' THEN sender_wallet_id IS NOT NULL
                AND receiver_wallet_id IS NOT NULL
                AND sender_wallet_id <> receiver_wallet_id
        END
    )
    """,
    "ALTER TABLE transactions DROP CONSTRAINT transactions_type_check",
    "ALTER TABLE transactions ADD CONSTRAINT transactions_type_check"
    " CHECK (type IN ('DEPOSIT', 'WITHDRAWAL', 'TRANSFER'))",
    "ALTER TABLE transactions DROP COLUMN reversal_count",
    "ALTER TABLE transactions DROP COLUMN reversal_claimed",
    "ALTER TABLE transactions DROP COLUMN reversal_of",
    "ALTER TABLE transactions DROP COLUMN description",
]


def upgrade() -> None:
    op.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    for statement in _UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in _DOWNGRADE:
        op.execute(statement)
