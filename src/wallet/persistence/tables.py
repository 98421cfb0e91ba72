"""The tables, declared once with SQLModel, with the CHECK constraints that PostgreSQL
enforces whatever the code does.

The migrations create them: they are what is deployed, and never change once applied.
tests/integration/test_migrations_match_tables.py shows that they build exactly this.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

NOW = text("clock_timestamp()")


class WalletRow(SQLModel, table=True):
    __tablename__ = "wallets"
    __table_args__ = (
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="wallets_currency_check"),
        CheckConstraint("balance >= 0", name="balance_never_negative"),
        # So no available balance (balance - held) is ever negative.
        CheckConstraint("held >= 0 AND held <= balance", name="held_within_balance"),
        # viewer.wallets: a caller's wallets, oldest first, paged by (created_at, id).
        Index("wallets_by_owner", "owner_id", "created_at", "id"),
    )

    id: UUID = Field(primary_key=True)
    # The caller id (a token's `sub`) of the wallet's owner.
    owner_id: str = Field(sa_column=Column(Text, nullable=False))
    currency: str = Field(sa_column=Column(String(3), nullable=False))
    balance: int = Field(sa_column=Column(BigInteger, nullable=False, server_default="0"))
    # What its ACTIVE holds reserve.
    held: int = Field(sa_column=Column(BigInteger, nullable=False, server_default="0"))
    version: int = Field(sa_column=Column(BigInteger, nullable=False, server_default="0"))
    created_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=NOW)
    )
    updated_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=NOW)
    )


class TransactionRow(SQLModel, table=True):
    __tablename__ = "transactions"
    __table_args__ = (
        CheckConstraint(
            "type IN ('DEPOSIT', 'WITHDRAWAL', 'TRANSFER', 'REVERSAL')",
            name="transactions_type_check",
        ),
        CheckConstraint(
            "status IN ('PENDING', 'COMPLETED', 'FAILED')", name="transactions_status_check"
        ),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            """
            CASE type
                WHEN 'DEPOSIT' THEN sender_wallet_id IS NULL AND receiver_wallet_id IS NOT NULL
                WHEN 'WITHDRAWAL' THEN sender_wallet_id IS NOT NULL AND receiver_wallet_id IS NULL
                WHEN 'TRANSFER' THEN sender_wallet_id IS NOT NULL
                    AND receiver_wallet_id IS NOT NULL
                    AND sender_wallet_id <> receiver_wallet_id
                WHEN 'REVERSAL' THEN (
                    sender_wallet_id IS NOT NULL OR receiver_wallet_id IS NOT NULL
                )
                    AND sender_wallet_id IS DISTINCT FROM receiver_wallet_id
            END
            """,
            name="wallets_fit_type",
        ),
        CheckConstraint(
            "(status = 'FAILED') = (failure_code IS NOT NULL)", name="failure_only_when_failed"
        ),
        CheckConstraint(
            "(status = 'PENDING') = (completed_at IS NULL)", name="completed_at_only_when_final"
        ),
        Index(
            "transactions_sender_history",
            "sender_wallet_id",
            text("created_at DESC"),
            text("id DESC"),
            postgresql_where=text("sender_wallet_id IS NOT NULL"),
        ),
        Index(
            "transactions_receiver_history",
            "receiver_wallet_id",
            text("created_at DESC"),
            text("id DESC"),
            postgresql_where=text("receiver_wallet_id IS NOT NULL"),
        ),
        Index(
            "transactions_pending",
            "created_at",
            postgresql_where=text("status = 'PENDING'"),
        ),
        CheckConstraint("hold_id IS NULL OR type <> 'DEPOSIT'", name="only_movements_out_capture"),
        # settle(): the rest of an atomic batch.
        Index("transactions_by_batch", "batch_id", postgresql_where=text("batch_id IS NOT NULL")),
        CheckConstraint("char_length(description) <= 280", name="description_length"),
        CheckConstraint(
            "reversal_claimed >= 0 AND reversal_claimed <= amount",
            name="reversals_within_original",
        ),
        CheckConstraint(
            "(type = 'REVERSAL') = (reversal_of IS NOT NULL)", name="reversal_names_its_original"
        ),
        CheckConstraint("reversal_count >= 0 AND reversal_count <= 50", name="reversals_bounded"),
        # Transaction.reversals and reversedAmount, oldest first.
        Index(
            "reversals_by_original",
            "reversal_of",
            "created_at",
            "id",
            postgresql_where=text("reversal_of IS NOT NULL"),
        ),
        # A hold is captured once: no two transactions name it.
        Index(
            "one_capture_per_hold",
            "hold_id",
            unique=True,
            postgresql_where=text("hold_id IS NOT NULL"),
        ),
    )

    id: UUID = Field(primary_key=True)
    type: str = Field(sa_column=Column(String(16), nullable=False))
    status: str = Field(sa_column=Column(String(16), nullable=False))
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(sa_column=Column(String(3), nullable=False))
    sender_wallet_id: UUID | None = Field(default=None, foreign_key="wallets.id")
    receiver_wallet_id: UUID | None = Field(default=None, foreign_key="wallets.id")
    client_transaction_id: str | None = Field(default=None, sa_column=Column(Text))
    failure_code: str | None = Field(default=None, sa_column=Column(String(32)))
    error_message: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=NOW)
    )
    completed_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    # When the sweeper last re-queued it; see persistence/sweeper.py.
    swept_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    # The hold it captured, when it is a capture.
    hold_id: UUID | None = Field(default=None, foreign_key="holds.id")
    # The atomic batch it was sent in, when it was: settled with the rest of it, all or none.
    batch_id: UUID | None = Field(default=None)
    description: str | None = Field(default=None, sa_column=Column(Text))
    # For a REVERSAL: the transaction it reverses.
    reversal_of: UUID | None = Field(default=None, foreign_key="transactions.id")
    # What its reversals take of it, PENDING or COMPLETED: never more than its amount.
    reversal_claimed: int = Field(sa_column=Column(BigInteger, nullable=False, server_default="0"))
    # How many reversals it has had, FAILED ones included: at most 50 (MAX_REVERSALS).
    reversal_count: int = Field(sa_column=Column(Integer, nullable=False, server_default="0"))


class HoldRow(SQLModel, table=True):
    __tablename__ = "holds"
    __table_args__ = (
        CheckConstraint(
            "status IN ('ACTIVE', 'CAPTURED', 'VOIDED', 'EXPIRED')", name="holds_status_check"
        ),
        CheckConstraint("amount > 0", name="hold_amount_positive"),
        CheckConstraint(
            "captured_amount >= 0 AND captured_amount <= amount", name="capture_within_hold"
        ),
        CheckConstraint(
            "(status = 'CAPTURED') = (capture_transaction_id IS NOT NULL AND captured_amount > 0)",
            name="captured_only_when_captured",
        ),
        CheckConstraint(
            "(status = 'ACTIVE') = (closed_at IS NULL)", name="closed_at_only_when_closed"
        ),
        CheckConstraint("receiver_wallet_id <> wallet_id", name="hold_receiver_is_another_wallet"),
        # The expirer's look for due holds: only ACTIVE ones are in it, so it stays small.
        Index("holds_due", "expires_at", postgresql_where=text("status = 'ACTIVE'")),
        # Wallet.holds, newest first, paged by (created_at, id).
        Index("holds_by_wallet", "wallet_id", text("created_at DESC"), text("id DESC")),
    )

    id: UUID = Field(primary_key=True)
    wallet_id: UUID = Field(foreign_key="wallets.id")
    receiver_wallet_id: UUID | None = Field(default=None, foreign_key="wallets.id")
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(sa_column=Column(String(3), nullable=False))
    status: str = Field(sa_column=Column(String(16), nullable=False))
    captured_amount: int = Field(sa_column=Column(BigInteger, nullable=False, server_default="0"))
    capture_transaction_id: UUID | None = Field(
        default=None,
        sa_column=Column(
            # A capture and its hold name each other: this key is added once both tables
            # exist (use_alter), under the name PostgreSQL gives it in the migration.
            ForeignKey(
                "transactions.id",
                deferrable=True,
                initially="DEFERRED",
                use_alter=True,
                name="holds_capture_transaction_id_fkey",
            ),
            nullable=True,
        ),
    )
    client_transaction_id: str | None = Field(default=None, sa_column=Column(Text))
    description: str | None = Field(default=None, sa_column=Column(Text))
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    created_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=NOW)
    )
    closed_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class LedgerEntryRow(SQLModel, table=True):
    __tablename__ = "ledger_entries"
    __table_args__ = (
        # balanceAt, statements and Wallet.entries: one lookup or one range scan by time.
        Index("ledger_entries_by_wallet_time", "wallet_id", "created_at", "id"),
        UniqueConstraint(
            "transaction_id", "wallet_id", name="one_entry_per_wallet_and_transaction"
        ),
        CheckConstraint("delta <> 0", name="ledger_entries_delta_check"),
        CheckConstraint("balance_after >= 0", name="ledger_entries_balance_after_check"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    transaction_id: UUID = Field(foreign_key="transactions.id")
    wallet_id: UUID = Field(foreign_key="wallets.id")
    delta: int = Field(sa_column=Column(BigInteger, nullable=False))
    balance_after: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=NOW)
    )


class IdempotencyKeyRow(SQLModel, table=True):
    __tablename__ = "idempotency_keys"
    __table_args__ = (
        CheckConstraint(
            "transaction_id IS NOT NULL OR wallet_id IS NOT NULL OR hold_id IS NOT NULL",
            name="records_a_result",
        ),
    )

    # A key is the caller's own: two callers may use the same one without ever meeting.
    caller_id: str = Field(sa_column=Column(Text, primary_key=True))
    key: str = Field(sa_column=Column(Text, primary_key=True))
    operation: str = Field(sa_column=Column(String(32), nullable=False))
    fingerprint: str = Field(sa_column=Column(String(64), nullable=False))
    transaction_id: UUID | None = Field(
        default=None,
        sa_column=Column(
            ForeignKey("transactions.id", deferrable=True, initially="DEFERRED"), nullable=True
        ),
    )
    wallet_id: UUID | None = Field(
        default=None,
        sa_column=Column(
            ForeignKey("wallets.id", deferrable=True, initially="DEFERRED"), nullable=True
        ),
    )
    hold_id: UUID | None = Field(
        default=None,
        sa_column=Column(
            ForeignKey("holds.id", deferrable=True, initially="DEFERRED"), nullable=True
        ),
    )
    created_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=NOW)
    )


wallets = WalletRow.__table__  # type: ignore[attr-defined]
transactions = TransactionRow.__table__  # type: ignore[attr-defined]
ledger_entries = LedgerEntryRow.__table__  # type: ignore[attr-defined]
idempotency_keys = IdempotencyKeyRow.__table__  # type: ignore[attr-defined]
holds = HoldRow.__table__  # type: ignore[attr-defined]
