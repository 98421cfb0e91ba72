"""Expected failures of the domain, each with the public code it is reported under.

    WalletError
    ├── InvalidInput              INVALID_INPUT
    ├── InvalidAmount             INVALID_AMOUNT
    ├── UnsupportedCurrency       UNSUPPORTED_CURRENCY
    ├── CurrencyMismatch          CURRENCY_MISMATCH
    ├── WalletNotFound            WALLET_NOT_FOUND
    ├── SameWallet                SAME_WALLET
    ├── InsufficientFunds         INSUFFICIENT_FUNDS
    ├── IdempotencyKeyReused      IDEMPOTENCY_KEY_REUSED
    ├── HoldNotFound              HOLD_NOT_FOUND
    ├── HoldNotActive             HOLD_NOT_ACTIVE
    ├── CaptureExceedsHold        CAPTURE_EXCEEDS_HOLD
    ├── LinkedTransferFailed      LINKED_TRANSFER_FAILED (another transfer of its atomic batch)
    ├── TransactionNotFound       TRANSACTION_NOT_FOUND
    ├── ReversalExceedsOriginal   REVERSAL_EXCEEDS_ORIGINAL
    ├── NotReversible             NOT_REVERSIBLE
    ├── Forbidden                 FORBIDDEN (the caller lacks the scope the request needs)
    └── InternalFailure           INTERNAL (a transaction that could not be settled)

    ConcurrencyConflict           a deadlock or serialization failure; retried, never shown

Anything else that escapes is a bug: it is logged and reported as INTERNAL.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID_INPUT = "INVALID_INPUT"
    INVALID_AMOUNT = "INVALID_AMOUNT"
    UNSUPPORTED_CURRENCY = "UNSUPPORTED_CURRENCY"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    WALLET_NOT_FOUND = "WALLET_NOT_FOUND"
    SAME_WALLET = "SAME_WALLET"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    RATE_LIMITED = "RATE_LIMITED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    INTERNAL = "INTERNAL"
    HOLD_NOT_FOUND = "HOLD_NOT_FOUND"
    HOLD_NOT_ACTIVE = "HOLD_NOT_ACTIVE"
    CAPTURE_EXCEEDS_HOLD = "CAPTURE_EXCEEDS_HOLD"
    LINKED_TRANSFER_FAILED = "LINKED_TRANSFER_FAILED"
    TRANSACTION_NOT_FOUND = "TRANSACTION_NOT_FOUND"
    REVERSAL_EXCEEDS_ORIGINAL = "REVERSAL_EXCEEDS_ORIGINAL"
    NOT_REVERSIBLE = "NOT_REVERSIBLE"


class WalletError(Exception):
    """A request the rules refuse. `field` names the input at fault, when one is."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(WalletError):
    code = ErrorCode.INVALID_INPUT


class InvalidAmount(WalletError):
    code = ErrorCode.INVALID_AMOUNT


class UnsupportedCurrency(WalletError):
    code = ErrorCode.UNSUPPORTED_CURRENCY


class CurrencyMismatch(WalletError):
    code = ErrorCode.CURRENCY_MISMATCH


class WalletNotFound(WalletError):
    code = ErrorCode.WALLET_NOT_FOUND


class SameWallet(WalletError):
    code = ErrorCode.SAME_WALLET


class InsufficientFunds(WalletError):
    code = ErrorCode.INSUFFICIENT_FUNDS


class IdempotencyKeyReused(WalletError):
    code = ErrorCode.IDEMPOTENCY_KEY_REUSED


class HoldNotFound(WalletError):
    code = ErrorCode.HOLD_NOT_FOUND


class HoldNotActive(WalletError):
    code = ErrorCode.HOLD_NOT_ACTIVE


class CaptureExceedsHold(WalletError):
    code = ErrorCode.CAPTURE_EXCEEDS_HOLD


class LinkedTransferFailed(WalletError):
    code = ErrorCode.LINKED_TRANSFER_FAILED


class TransactionNotFound(WalletError):
    code = ErrorCode.TRANSACTION_NOT_FOUND


class ReversalExceedsOriginal(WalletError):
    code = ErrorCode.REVERSAL_EXCEEDS_ORIGINAL


class NotReversible(WalletError):
    code = ErrorCode.NOT_REVERSIBLE


class Forbidden(WalletError):
    code = ErrorCode.FORBIDDEN


class InternalFailure(WalletError):
    code = ErrorCode.INTERNAL


class TransfersRejected(Exception):
    """An atomic batch refused as a whole: `errors` holds each transfer's own refusal, or
    LinkedTransferFailed for one refused only because another was."""

    def __init__(self, errors: list[WalletError]) -> None:
        super().__init__(f"{sum(not isinstance(e, LinkedTransferFailed) for e in errors)} refused")
        self.errors = errors


class ConcurrencyConflict(Exception):
    """The database aborted a transaction to break a deadlock or a serialization conflict."""
