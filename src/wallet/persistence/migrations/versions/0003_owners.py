"""Every wallet has an owner, and idempotency keys are scoped to the caller who sent them.

Wallets and keys written before callers were known get the owner `legacy`: no token names
it, so only admins see those wallets, and their keys never meet a caller's.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None

# The owner and caller of everything written before this revision.
LEGACY = "legacy"

# One statement each: asyncpg prepares statements one at a time. The default fills the
# existing rows and is then dropped: every new row names its owner or caller explicitly.
_UPGRADE = [
    f"ALTER TABLE wallets ADD COLUMN owner_id text NOT NULL DEFAULT '{LEGACY}'",
    "ALTER TABLE wallets ALTER COLUMN owner_id DROP DEFAULT",
    # viewer.wallets: a caller's wallets, oldest first, paged by (created_at, id).
    "CREATE INDEX wallets_by_owner ON wallets (owner_id, created_at, id)",
    f"ALTER TABLE idempotency_keys ADD COLUMN caller_id text NOT NULL DEFAULT '{LEGACY}'",
    "ALTER TABLE idempotency_keys ALTER COLUMN caller_id DROP DEFAULT",
    "ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey",
    "ALTER TABLE idempotency_keys ADD PRIMARY KEY (caller_id, key)",
]

_DOWNGRADE = [
    # Keys of different callers may now be equal; the older schema cannot hold both.
    "ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey",
    "ALTER TABLE idempotency_keys DROP COLUMN caller_id",
    "ALTER TABLE idempotency_keys ADD PRIMARY KEY (key)",
    "DROP INDEX wallets_by_owner",
    "ALTER TABLE wallets DROP COLUMN owner_id",
]


def upgrade() -> None:
    for statement in _UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in _DOWNGRADE:
        op.execute(statement)
