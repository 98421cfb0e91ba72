"""Remember when the sweeper last handed a PENDING transaction back to the queue.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE transactions ADD COLUMN swept_at timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE transactions DROP COLUMN swept_at")
