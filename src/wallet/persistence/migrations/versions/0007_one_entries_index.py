"""Ledger entries keep one index by wallet: (wallet_id, created_at, id), which every read walks
since 0006. The older (wallet_id, id) served none, and cost every transfer two more index
insertions under its wallets' locks.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels = None
depends_on = None

# As in 0004: a lock not had within LOCK_TIMEOUT fails the migration, to be run again.
LOCK_TIMEOUT = "5s"


def upgrade() -> None:
    op.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    op.execute("DROP INDEX ledger_entries_by_wallet")


def downgrade() -> None:
    op.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    op.execute("CREATE INDEX ledger_entries_by_wallet ON ledger_entries (wallet_id, id)")
