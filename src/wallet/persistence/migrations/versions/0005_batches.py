"""Atomic batches of transfers: each transfer names its batch, settled all or none.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None

# As in 0004: a lock not had within LOCK_TIMEOUT fails the migration, to be run again.
LOCK_TIMEOUT = "5s"

_DOWNGRADE = [
    "DROP INDEX transactions_by_batch",
    "ALTER TABLE transactions DROP COLUMN batch_id",
]


def upgrade() -> None:
    op.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    op.execute("ALTER TABLE transactions ADD COLUMN batch_id uuid")
    # settle(): the rest of an atomic batch. Only batched transfers are in it (all NULL now:
    # the index is built at once).
    op.execute(
        "CREATE INDEX transactions_by_batch ON transactions (batch_id) WHERE batch_id IS NOT NULL"
    )


def downgrade() -> None:
    for statement in _DOWNGRADE:
        op.execute(statement)
