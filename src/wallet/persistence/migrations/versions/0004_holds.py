"""Holds: money reserved in a wallet until it is captured, voided or expires.

A wallet's `held` is what its ACTIVE holds reserve; PostgreSQL keeps it within the balance,
so no available balance (balance - held) is ever negative, whatever the code does. A hold
captures at most its amount, once: a capture is a transaction naming its hold, and no two
transactions name the same one.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None

# `wallet migrate` runs every migration in one transaction, holding its advisory lock. Each
# statement here takes its table's lock at once or fails within LOCK_TIMEOUT (the migration
# is then run again), rather than queueing every request behind it. The constraints' checks
# and the unique index do scan `wallets` and `transactions` while their locks are held: on a
# large deployment, migrate at a quiet time.
# One statement each: asyncpg prepares statements one at a time.
LOCK_TIMEOUT = "5s"

_UPGRADE = [
    "ALTER TABLE wallets ADD COLUMN held bigint NOT NULL DEFAULT 0",
    "ALTER TABLE wallets ADD CONSTRAINT held_within_balance CHECK (held >= 0 AND held <= balance)",
    """
    CREATE TABLE holds (
        id uuid PRIMARY KEY,
        wallet_id uuid NOT NULL REFERENCES wallets (id),
        receiver_wallet_id uuid REFERENCES wallets (id),
        amount bigint NOT NULL,
        currency varchar(3) NOT NULL,
        status varchar(16) NOT NULL,
        captured_amount bigint NOT NULL DEFAULT 0,
        capture_transaction_id uuid
            REFERENCES transactions (id) DEFERRABLE INITIALLY DEFERRED,
        client_transaction_id text,
        description text,
        expires_at timestamptz NOT NULL,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        closed_at timestamptz,
        CONSTRAINT holds_status_check
            CHECK (status IN ('ACTIVE', 'CAPTURED', 'VOIDED', 'EXPIRED')),
        CONSTRAINT hold_amount_positive CHECK (amount > 0),
        CONSTRAINT capture_within_hold CHECK (captured_amount >= 0 AND captured_amount <= amount),
        CONSTRAINT captured_only_when_captured CHECK (
            (status = 'CAPTURED') = (capture_transaction_id IS NOT NULL AND captured_amount > 0)
        ),
        CONSTRAINT closed_at_only_when_closed CHECK ((status = 'ACTIVE') = (closed_at IS NULL)),
        CONSTRAINT hold_receiver_is_another_wallet CHECK (receiver_wallet_id <> wallet_id)
    )
    """,
    # The expirer's look for due holds: only ACTIVE ones are in it, so it stays small.
    "CREATE INDEX holds_due ON holds (expires_at) WHERE status = 'ACTIVE'",
    # Wallet.holds, newest first, paged by (created_at, id).
    "CREATE INDEX holds_by_wallet ON holds (wallet_id, created_at DESC, id DESC)",
    "ALTER TABLE transactions ADD COLUMN hold_id uuid REFERENCES holds (id)",
    "ALTER TABLE transactions ADD CONSTRAINT only_movements_out_capture"
    " CHECK (hold_id IS NULL OR type <> 'DEPOSIT')",
    # A hold is captured once: no two transactions name it.
    "CREATE UNIQUE INDEX one_capture_per_hold ON transactions (hold_id) WHERE hold_id IS NOT NULL",
    "ALTER TABLE idempotency_keys ADD COLUMN hold_id uuid"
    " REFERENCES holds (id) DEFERRABLE INITIALLY DEFERRED",
    "ALTER TABLE idempotency_keys DROP CONSTRAINT records_a_result",
    "ALTER TABLE idempotency_keys ADD CONSTRAINT records_a_result"
    " CHECK (transaction_id IS NOT NULL OR wallet_id IS NOT NULL OR hold_id IS NOT NULL)",
]

_DOWNGRADE = [
    # Keys that recorded a hold have nothing the older schema could point them at.
    "DELETE FROM idempotency_keys WHERE hold_id IS NOT NULL",
    "ALTER TABLE idempotency_keys DROP CONSTRAINT records_a_result",
    "ALTER TABLE idempotency_keys DROP COLUMN hold_id",
    "ALTER TABLE idempotency_keys ADD CONSTRAINT records_a_result"
    " CHECK (transaction_id IS NOT NULL OR wallet_id IS NOT NULL)",
    "DROP INDEX one_capture_per_hold",
    "ALTER TABLE transactions DROP CONSTRAINT only_movements_out_capture",
    "ALTER TABLE transactions DROP COLUMN hold_id",
    "DROP TABLE holds",
    "ALTER TABLE wallets DROP CONSTRAINT held_within_balance",
    "ALTER TABLE wallets DROP COLUMN held",
]


def upgrade() -> None:
    op.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    for statement in _UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    # ACTIVE holds are forgotten with their table: the money they reserved becomes available.
    for statement in _DOWNGRADE:
        op.execute(statement)
