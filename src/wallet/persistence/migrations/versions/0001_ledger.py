"""The ledger: wallets, transactions, ledger entries and idempotency keys.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


# One statement each: asyncpg prepares statements one at a time.
_SCHEMA = [
    """
    CREATE TABLE wallets (
        id uuid PRIMARY KEY,
        currency varchar(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
        balance bigint NOT NULL DEFAULT 0 CONSTRAINT balance_never_negative CHECK (balance >= 0),
        version bigint NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
    )
    """,
    """
    CREATE TABLE transactions (
        id uuid PRIMARY KEY,
        type varchar(16) NOT NULL CHECK (type IN ('DEPOSIT', 'WITHDRAWAL', 'TRANSFER')),
        status varchar(16) NOT NULL CHECK (status IN ('PENDING', 'COMPLETED', 'FAILED')),
        amount bigint NOT NULL CONSTRAINT amount_positive CHECK (amount > 0),
        currency varchar(3) NOT NULL,
        sender_wallet_id uuid REFERENCES wallets (id),
        receiver_wallet_id uuid REFERENCES wallets (id),
        client_transaction_id text,
        failure_code varchar(32),
        error_message text,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        completed_at timestamptz,
        CONSTRAINT wallets_fit_type CHECK (
            CASE type
                WHEN 'DEPOSIT' THEN sender_wallet_id IS NULL AND receiver_wallet_id IS NOT NULL
                WHEN 'WITHDRAWAL' THEN sender_wallet_id IS NOT NULL AND receiver_wallet_id IS NULL
                WHEN 'TRANSFER' THEN sender_wallet_id IS NOT NULL
                    AND receiver_wallet_id IS NOT NULL
                    AND sender_wallet_id <> receiver_wallet_id
            END
        ),
        CONSTRAINT failure_only_when_failed CHECK (
            (status = 'FAILED') = (failure_code IS NOT NULL)
        ),
        CONSTRAINT completed_at_only_when_final CHECK (
            (status = 'PENDING') = (completed_at IS NULL)
        )
    )
    """,
    """
    CREATE INDEX transactions_sender_history
        ON transactions (sender_wallet_id, created_at DESC, id DESC)
        WHERE sender_wallet_id IS NOT NULL
    """,
    """
    CREATE INDEX transactions_receiver_history
        ON transactions (receiver_wallet_id, created_at DESC, id DESC)
        WHERE receiver_wallet_id IS NOT NULL
    """,
    """
    CREATE INDEX transactions_pending
        ON transactions (created_at) WHERE status = 'PENDING'
    """,
    """
    CREATE TABLE ledger_entries (
        id bigserial PRIMARY KEY,
        transaction_id uuid NOT NULL REFERENCES transactions (id),
        wallet_id uuid NOT NULL REFERENCES wallets (id),
        delta bigint NOT NULL CHECK (delta <> 0),
        balance_after bigint NOT NULL CHECK (balance_after >= 0),
        created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        CONSTRAINT one_entry_per_wallet_and_transaction UNIQUE (transaction_id, wallet_id)
    )
    """,
    """
    CREATE INDEX ledger_entries_by_wallet ON ledger_entries (wallet_id, id)
    """,
    """
    CREATE TABLE idempotency_keys (
        key text PRIMARY KEY,
        operation varchar(32) NOT NULL,
        fingerprint varchar(64) NOT NULL,
        transaction_id uuid REFERENCES transactions (id) DEFERRABLE INITIALLY DEFERRED,
        wallet_id uuid REFERENCES wallets (id) DEFERRABLE INITIALLY DEFERRED,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        CONSTRAINT records_a_result CHECK (transaction_id IS NOT NULL OR wallet_id IS NOT NULL)
    )
    """,
]


def upgrade() -> None:
    for statement in _SCHEMA:
        op.execute(statement)


def downgrade() -> None:
    for table in ("idempotency_keys", "ledger_entries", "transactions", "wallets"):
        op.execute(f"DROP TABLE {table}")
