"""The contract's object types, payloads and inputs, mapped from the domain's objects."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import MISSING
from datetime import datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID

import strawberry
from strawberry.types import Info
from strawberry.types.arguments import InputContext
from strawberry.types.base import StrawberryOptional
from strawberry.utils.str_converters import to_camel_case

from wallet.domain import errors as domain_errors
from wallet.domain import ledger, model
from wallet.domain.model import MAX_PAGE_SIZE, HistoryRequest, HoldsRequest, OwnedWalletsRequest
from wallet.domain.money import Currency, Money
from wallet.schema.context import Context
from wallet.schema.pagination import (
    InvalidCursor,
    decode_cursor,
    decode_entry_cursor,
    encode_cursor,
    encode_entry_cursor,
)
from wallet.schema.scalars import DecimalText

# A cursor's position: a transaction's (created_at, id), or an entry's.
P = TypeVar("P")
InputT = TypeVar("InputT")

# What graphql-core has parsed already, and Strawberry hands on as it is.
_SCALARS = (str, bool, int, strawberry.ID, DecimalText)


def _of_scalars(cls: type[InputT]) -> type[InputT]:
    """Build this input in one call (Strawberry's `from_input` hook). Left to Strawberry, each
    field of each value is converted on its own, its type resolved and its name converted
    again every time: a sixth of an API process's CPU on batches of 100 transfers (py-spy).
    Only for inputs of scalars, which need no converting: refused for any other."""
    definition = cls.__strawberry_definition__  # type: ignore[attr-defined]
    for field in definition.fields:
        # Exactly Optional: a Maybe (its subclass) wants its value wrapped, and nulls refused.
        optional = type(field.type) is StrawberryOptional
        kind = field.type.of_type if optional else field.type
        if kind not in _SCALARS:
            raise TypeError(f"{cls.__name__}.{field.python_name} is not a scalar")
    # As Strawberry does: graphql-core has checked that the required ones are there.
    nulls = {
        field.python_name: None
        for field in definition.fields
        if field.default_value is MISSING and field.default_factory is MISSING
    }
    # Each schema's names of the fields (its config names them), learnt on its first input.
    names: dict[int, list[tuple[str, str]]] = {}

    def from_input(built: type[InputT], value: Mapping[str, Any], context: InputContext) -> InputT:
        named = names.get(id(context.config))
        if named is None:
            convert = context.config.name_converter.from_field
            named = [(convert(field), field.python_name) for field in definition.fields]
            names[id(context.config)] = named
        fields = dict(nulls)
        for graphql_name, python_name in named:
            if graphql_name in value:
                fields[python_name] = value[graphql_name]
        return built(**fields)

    definition.from_input = from_input
    return cls


# The domain's enums are the contract's: registered with Strawberry here, not decorated there.
strawberry.enum(domain_errors.ErrorCode)
strawberry.enum(model.TransactionType)
strawberry.enum(model.TransactionStatus)
strawberry.enum(model.HoldStatus)
ErrorCode = domain_errors.ErrorCode
TransactionType = model.TransactionType
TransactionStatus = model.TransactionStatus
HoldStatus = model.HoldStatus


class PublicError(Exception):
    """A GraphQL error whose message is meant for the client, never masked."""


class InvalidCursorError(PublicError):
    # graphql-core copies an exception's `extensions` into the error it reports.
    extensions = {"code": "INVALID_CURSOR"}


class WalletNotFoundError(PublicError):
    extensions = {"code": "WALLET_NOT_FOUND"}


class InvalidArgumentError(PublicError):
    """An argument the client got wrong: INVALID_INPUT, with the argument's path."""

    def __init__(self, message: str, argument: str) -> None:
        super().__init__(message)
        self.extensions = {"code": ErrorCode.INVALID_INPUT.value, "field": [argument]}


def id_argument(text: str, argument: str) -> UUID:
    """The UUID an id argument holds; a malformed one is the client's mistake."""
    try:
        return UUID(text)
    except ValueError:
        raise InvalidArgumentError(f"`{argument}`: {text!r} is not a UUID", argument) from None


@strawberry.input
class TransactionFilter:
    types: list[TransactionType] | None = None
    statuses: list[TransactionStatus] | None = None


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None

    @classmethod
    def of(cls, cursors: list[str], *, has_next: bool, has_previous: bool) -> PageInfo:
        """The page's info, from the cursors of its edges in order."""
        return cls(
            has_next_page=has_next,
            has_previous_page=has_previous,
            start_cursor=cursors[0] if cursors else None,
            end_cursor=cursors[-1] if cursors else None,
        )


def _decimal(minor: int, currency: Currency) -> DecimalText:
    """An amount in minor units as the API writes it ("12.50")."""
    return DecimalText(str(Money(minor, currency)))


def _forward_page_size(first: int | None) -> int:
    """How many items a forward-only page (`first`, `after`) holds."""
    if first is None:
        raise InvalidArgumentError("`first` may not be null; leave it out for 20", "first")
    if first < 0:
        raise InvalidArgumentError("`first` must be zero or more", "first")
    return min(first, MAX_PAGE_SIZE)


@strawberry.type
class TransactionEdge:
    cursor: str = strawberry.field(
        description="Opaque; pass it as `after` to get the transactions that follow."
    )
    node: Transaction


@strawberry.type
class TransactionConnection:
    edges: list[TransactionEdge]
    page_info: PageInfo


def _position(
    cursor: str | None,
    argument: str,
    decode: Callable[[str], P],
) -> P | None:
    """Where a page starts, from the cursor the client sent back, read by `decode`."""
    if cursor is None:
        return None
    try:
        return decode(cursor)
    except InvalidCursor as error:
        raise InvalidCursorError(f"`{argument}`: {error}") from None


@strawberry.type
class Wallet:
    id: strawberry.ID
    currency: str = strawberry.field(description='ISO 4217 currency code, e.g. "USD".')
    balance: DecimalText = strawberry.field(
        description="What the wallet holds now: every COMPLETED transaction, nothing else."
    )
    created_at: datetime
    updated_at: datetime
    owner_id: strawberry.ID = strawberry.field(description="The caller id of its owner.")
    available_balance: DecimalText = strawberry.field(
        description="balance minus what its ACTIVE holds reserve."
    )
    held_balance: DecimalText = strawberry.field(description="What its ACTIVE holds reserve.")

    @classmethod
    def from_domain(cls, wallet: model.Wallet) -> Wallet:
        assert wallet.created_at is not None
        assert wallet.updated_at is not None
        return cls(
            id=strawberry.ID(str(wallet.id)),
            owner_id=strawberry.ID(wallet.owner_id),
            currency=wallet.currency.code,
            balance=DecimalText(str(wallet.balance)),
            available_balance=DecimalText(str(wallet.available)),
            held_balance=_decimal(wallet.held, wallet.currency),
            created_at=wallet.created_at,
            updated_at=wallet.updated_at,
        )

    @strawberry.field(description="Its holds, newest first.")
    async def holds(
        self,
        info: Info[Context, None],
        first: Annotated[
            int | None,
            strawberry.argument(
                description=f"How many holds, newest first: at most {MAX_PAGE_SIZE}; "
                f"a larger number is answered with {MAX_PAGE_SIZE}."
            ),
        ] = 20,
        after: str | None = None,
        statuses: list[HoldStatus] | None = None,
    ) -> HoldConnection:
        request = HoldsRequest(
            wallet_id=UUID(self.id),
            limit=_forward_page_size(first),
            after=_position(after, "after", decode_cursor),
            statuses=frozenset(statuses) if statuses else None,
        )
        page = await info.context.holds_loader.load(request)
        edges = []
        for hold in page.holds:
            info.context.hold_loader.prime(hold.id, hold)
            assert hold.created_at is not None
            edges.append(
                HoldEdge(
                    cursor=encode_cursor(hold.created_at, hold.id), node=Hold.from_domain(hold)
                )
            )
        return HoldConnection(
            edges=edges,
            page_info=PageInfo.of(
                [e.cursor for e in edges], has_next=page.has_next, has_previous=after is not None
            ),
        )

    @strawberry.field(
        description="Every transaction that touches this wallet, newest first, "
        f"in pages of at most {MAX_PAGE_SIZE}."
    )
    async def transactions(
        self,
        info: Info[Context, None],
        first: Annotated[
            int | None,
            strawberry.argument(
                description=f"How many transactions, newest first: at most {MAX_PAGE_SIZE}; "
                f"a larger number is answered with {MAX_PAGE_SIZE}."
            ),
        ] = 20,
        after: str | None = None,
        filter: TransactionFilter | None = None,
        last: Annotated[
            int | None,
            strawberry.argument(
                description="With `before`: the transactions just newer; at most "
                f"{MAX_PAGE_SIZE}, a larger number is answered with {MAX_PAGE_SIZE}."
            ),
        ] = None,
        before: Annotated[
            str | None,
            strawberry.argument(description="A cursor; page backward from it with `last`."),
        ] = None,
    ) -> TransactionConnection:
        backward = last is not None or before is not None
        if backward and (after is not None):
            raise PublicError("page forward with first/after or backward with last/before")
        size = (last if last is not None else 20) if backward else first
        if size is None:
            # An explicit `first: null`; leaving it out means the default page.
            raise InvalidArgumentError("`first` may not be null; leave it out for 20", "first")
        if size < 0:
            raise InvalidArgumentError(
                "`first` and `last` must be zero or more", "last" if backward else "first"
            )
        request = HistoryRequest(
            wallet_id=UUID(self.id),
            limit=min(size, MAX_PAGE_SIZE),
            after=_position(after, "after", decode_cursor),
            before=_position(before, "before", decode_cursor),
            backward=backward,
            types=frozenset(filter.types) if filter and filter.types else None,
            statuses=frozenset(filter.statuses) if filter and filter.statuses else None,
        )
        page = await info.context.history_loader.load(request)
        loader = info.context.transaction_loader
        edges = []
        for transaction in page.transactions:
            loader.prime(transaction.id, transaction)
            assert transaction.created_at is not None
            edges.append(
                TransactionEdge(
                    cursor=encode_cursor(transaction.created_at, transaction.id),
                    node=Transaction.from_domain(transaction),
                )
            )
        return TransactionConnection(
            edges=edges,
            page_info=PageInfo.of(
                [e.cursor for e in edges], has_next=page.has_next, has_previous=page.has_previous
            ),
        )

    @strawberry.field(
        description="Its balance at that instant: every COMPLETED movement up to and including it."
    )
    async def balance_at(self, info: Info[Context, None], time: datetime) -> DecimalText:
        minor = await info.context.balance_at_loader.load(
            ledger.BalanceRequest(UUID(self.id), time)
        )
        return _decimal(minor, Currency.of(self.currency))

    @strawberry.field(
        description="Its ledger entries, newest first, optionally only those in [since, until)."
    )
    async def entries(
        self,
        info: Info[Context, None],
        first: Annotated[
            int | None,
            strawberry.argument(
                description=f"How many entries, newest first: at most {MAX_PAGE_SIZE}; "
                f"a larger number is answered with {MAX_PAGE_SIZE}."
            ),
        ] = 20,
        after: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> LedgerEntryConnection:
        request = ledger.EntriesRequest(
            wallet_id=UUID(self.id),
            limit=_forward_page_size(first),
            after=_position(after, "after", decode_entry_cursor),
            since=since,
            until=until,
        )
        page = await info.context.entries_loader.load(request)
        currency = Currency.of(self.currency)
        edges = [
            LedgerEntryEdge(
                cursor=encode_entry_cursor(*entry.position),
                node=LedgerEntry.from_domain(entry, currency),
            )
            for entry in page.entries
        ]
        return LedgerEntryConnection(
            edges=edges,
            page_info=PageInfo.of(
                [e.cursor for e in edges], has_next=page.has_next, has_previous=after is not None
            ),
        )

    @strawberry.field(
        description="The balance at the start and the end of [since, until), and the "
        "movements between."
    )
    async def statement(
        self, info: Info[Context, None], since: datetime, until: datetime
    ) -> Statement:
        try:
            request = ledger.StatementRequest(UUID(self.id), since, until)
        except ledger.EmptyPeriod as error:
            raise InvalidArgumentError(f"`until`: {error}", "until") from None
        found = await info.context.statement_loader.load(request)
        return Statement.from_domain(found, Currency.of(self.currency))


def _id_or_none(value: UUID | None) -> strawberry.ID | None:
    return strawberry.ID(str(value)) if value is not None else None


async def _wallet(info: Info[Context, None], wallet_id: str | None) -> Wallet | None:
    if wallet_id is None:
        return None
    wallet = await info.context.wallet(UUID(wallet_id))
    return Wallet.from_domain(wallet) if wallet is not None else None


@strawberry.type
class Transaction:
    id: strawberry.ID
    type: TransactionType
    status: TransactionStatus
    amount: DecimalText
    currency: str
    client_transaction_id: str | None
    failure_code: ErrorCode | None = strawberry.field(
        description="Why it failed; null unless status is FAILED."
    )
    error_message: str | None
    created_at: datetime
    completed_at: datetime | None = strawberry.field(
        description="When it became COMPLETED or FAILED; null while PENDING."
    )
    sender_wallet_id: strawberry.ID | None = strawberry.field(
        description="Set whenever the transaction has a sender wallet, even where "
        "senderWallet is null."
    )
    receiver_wallet_id: strawberry.ID | None = strawberry.field(
        description="Set whenever the transaction has a receiver wallet, even where "
        "receiverWallet is null."
    )
    hold_id: strawberry.Private[UUID | None] = None
    description: str | None = strawberry.field(
        default=None, description="Free text from the request that made it."
    )
    reversal_of_id: strawberry.Private[UUID | None] = None

    @classmethod
    def from_domain(cls, transaction: model.Transaction) -> Transaction:
        assert transaction.created_at is not None
        return cls(
            id=strawberry.ID(str(transaction.id)),
            type=transaction.type,
            status=transaction.status,
            amount=DecimalText(str(transaction.amount)),
            currency=transaction.amount.currency.code,
            client_transaction_id=transaction.client_transaction_id,
            failure_code=transaction.failure_code,
            error_message=transaction.error_message,
            created_at=transaction.created_at,
            completed_at=transaction.completed_at,
            sender_wallet_id=_id_or_none(transaction.sender_wallet_id),
            receiver_wallet_id=_id_or_none(transaction.receiver_wallet_id),
            hold_id=transaction.hold_id,
            description=transaction.description,
            reversal_of_id=transaction.reversal_of,
        )

    @strawberry.field(description="The hold it captured, when it is a capture.")
    async def hold(self, info: Info[Context, None]) -> Hold | None:
        if self.hold_id is None:
            return None
        # Whoever sees a capture sees its hold: both belong to the same two wallets.
        hold = await info.context.hold_loader.load(self.hold_id)
        return Hold.from_domain(hold) if hold is not None else None

    @strawberry.field(description="For a REVERSAL: the transaction it reverses.")
    async def reversal_of(self, info: Info[Context, None]) -> Transaction | None:
        if self.reversal_of_id is None:
            return None
        original = await info.context.transaction_loader.load(self.reversal_of_id)
        if original is None or not await info.context.sees(original):
            return None
        return Transaction.from_domain(original)

    @strawberry.field(description="Its reversals, oldest first.")
    async def reversals(self, info: Info[Context, None]) -> list[Transaction]:
        found = await info.context.reversals_loader.load(UUID(self.id))
        # Together, so their wallets are loaded in one batch.
        seen = await asyncio.gather(*(info.context.sees(r) for r in found))
        return [Transaction.from_domain(r) for r, shown in zip(found, seen, strict=True) if shown]

    @strawberry.field(description="What its COMPLETED reversals returned.")
    async def reversed_amount(self, info: Info[Context, None]) -> DecimalText:
        found = await info.context.reversals_loader.load(UUID(self.id))
        returned = sum(r.amount.minor for r in found if r.status is TransactionStatus.COMPLETED)
        return _decimal(returned, Currency.of(self.currency))

    @strawberry.field(description="Null for a deposit.")
    async def sender_wallet(self, info: Info[Context, None]) -> Wallet | None:
        return await _wallet(info, self.sender_wallet_id)

    @strawberry.field(description="Null for a withdrawal.")
    async def receiver_wallet(self, info: Info[Context, None]) -> Wallet | None:
        return await _wallet(info, self.receiver_wallet_id)


@strawberry.type
class Hold:
    id: strawberry.ID
    status: HoldStatus
    wallet_id: strawberry.ID
    receiver_wallet_id: strawberry.ID | None
    amount: DecimalText = strawberry.field(description="What it reserved when placed.")
    captured_amount: DecimalText = strawberry.field(
        description="What its capture moved; zero unless CAPTURED."
    )
    currency: str
    client_transaction_id: str | None
    description: str | None
    expires_at: datetime
    created_at: datetime
    closed_at: datetime | None = strawberry.field(
        description="When it stopped being ACTIVE; null while ACTIVE."
    )
    capture_id: strawberry.Private[UUID | None] = None

    @classmethod
    def from_domain(cls, hold: model.Hold) -> Hold:
        assert hold.created_at is not None
        currency = hold.amount.currency
        return cls(
            id=strawberry.ID(str(hold.id)),
            status=hold.status,
            wallet_id=strawberry.ID(str(hold.wallet_id)),
            receiver_wallet_id=_id_or_none(hold.receiver_wallet_id),
            amount=DecimalText(str(hold.amount)),
            captured_amount=_decimal(hold.captured, currency),
            currency=currency.code,
            client_transaction_id=hold.client_transaction_id,
            description=hold.description,
            expires_at=hold.expires_at,
            created_at=hold.created_at,
            closed_at=hold.closed_at,
            capture_id=hold.capture_id,
        )

    @strawberry.field(
        description="The wallet it reserves money in; null where the caller may not see "
        "that wallet."
    )
    async def wallet(self, info: Info[Context, None]) -> Wallet | None:
        return await _wallet(info, self.wallet_id)

    @strawberry.field(
        description="Where a capture sends the money; null when there is none, or the "
        "caller may not see it."
    )
    async def receiver_wallet(self, info: Info[Context, None]) -> Wallet | None:
        return await _wallet(info, self.receiver_wallet_id)

    @strawberry.field(
        description="The COMPLETED transaction its capture recorded; null unless CAPTURED."
    )
    async def capture(self, info: Info[Context, None]) -> Transaction | None:
        if self.capture_id is None:
            return None
        # Whoever sees a hold sees its capture: both belong to the same two wallets.
        transaction = await info.context.transaction_loader.load(self.capture_id)
        return Transaction.from_domain(transaction) if transaction is not None else None


@strawberry.type
class HoldEdge:
    cursor: str = strawberry.field(
        description="Opaque; pass it as `after` to get the holds that follow."
    )
    node: Hold


@strawberry.type
class HoldConnection:
    edges: list[HoldEdge]
    page_info: PageInfo


@strawberry.type
class UserError:
    code: ErrorCode
    message: str
    field: list[str] | None = strawberry.field(
        description=(
            'Path to the input field at fault, e.g. ["input", "amount"]; null when no one field is.'
        )
    )

    @classmethod
    def from_domain(
        cls, error: domain_errors.WalletError, at: tuple[str, ...] = ("input",)
    ) -> UserError:
        """The refusal, its field named by its path from `at` (the input it is in)."""
        return cls(
            code=error.code,
            message=error.message,
            # The domain names the command's field; the client knows it by its GraphQL name.
            field=[*at, to_camel_case(error.field)] if error.field else None,
        )


@strawberry.type
class CreateWalletPayload:
    wallet: Wallet | None
    errors: list[UserError]


@strawberry.type
class TransactionPayload:
    transaction: Transaction | None
    errors: list[UserError]


@_of_scalars
@strawberry.input
class CreateWalletInput:
    currency: str = "USD"
    initial_balance: DecimalText = strawberry.field(
        default=DecimalText("0"), description="Recorded as a COMPLETED deposit when above zero."
    )
    client_transaction_id: str | None = strawberry.field(
        default=None,
        description="Optional idempotency key: the same key returns the same wallet.",
    )
    owner_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="Admins only: the owner to create it for; the caller when omitted.",
    )


@strawberry.input
class TransferBatchInput:
    transfers: list[TransferInput] = strawberry.field(description="1 to 1,000 transfers.")
    atomic: bool = False


@strawberry.type
class TransferBatchPayload:
    results: list[TransactionPayload] = strawberry.field(
        description="One per transfer, in the order sent; empty when the batch as a whole "
        "was refused."
    )
    errors: list[UserError] = strawberry.field(description="Why the batch as a whole was refused.")


@strawberry.type
class HoldPayload:
    hold: Hold | None
    errors: list[UserError]


def _description() -> str | None:
    """The optional free text of a request's input (each input needs a field of its own)."""
    description: str | None = strawberry.field(
        default=None, description=f"At most {model.MAX_DESCRIPTION_LENGTH} characters."
    )
    return description


@_of_scalars
@strawberry.input
class PlaceHoldInput:
    wallet_id: strawberry.ID
    receiver_wallet_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="Where a capture will send the money; when omitted a capture takes it "
        "out, like a withdrawal.",
    )
    amount: DecimalText
    client_transaction_id: str
    expires_in_seconds: int = strawberry.field(
        default=model.DEFAULT_HOLD_SECONDS,
        description="From 1 second to 30 days (2,592,000); 7 days by default.",
    )
    description: str | None = _description()


@_of_scalars
@strawberry.input
class CaptureHoldInput:
    hold_id: strawberry.ID
    amount: DecimalText | None = strawberry.field(
        default=None, description="At most the held amount; the whole of it when omitted."
    )
    client_transaction_id: str


@_of_scalars
@strawberry.input
class VoidHoldInput:
    hold_id: strawberry.ID
    client_transaction_id: str


@_of_scalars
@strawberry.input
class ReverseTransactionInput:
    transaction_id: strawberry.ID
    amount: DecimalText | None = strawberry.field(
        default=None, description="At most what is left to reverse; all of it when omitted."
    )
    client_transaction_id: str
    description: str | None = _description()


@_of_scalars
@strawberry.input
class DepositInput:
    wallet_id: strawberry.ID
    amount: DecimalText
    client_transaction_id: str
    description: str | None = _description()


@_of_scalars
@strawberry.input
class WithdrawInput:
    wallet_id: strawberry.ID
    amount: DecimalText
    client_transaction_id: str
    description: str | None = _description()


@_of_scalars
@strawberry.input
class TransferInput:
    from_wallet_id: strawberry.ID
    to_wallet_id: strawberry.ID
    amount: DecimalText
    client_transaction_id: str
    description: str | None = _description()


@strawberry.type
class WalletEdge:
    cursor: str
    node: Wallet


@strawberry.type
class WalletConnection:
    edges: list[WalletEdge]
    page_info: PageInfo


@strawberry.type
class Viewer:
    id: strawberry.ID = strawberry.field(description="The token's `sub`.")
    scopes: list[str] = strawberry.field(description="The token's scopes.")

    @strawberry.field(description="The wallets the caller owns, oldest first.")
    async def wallets(
        self, info: Info[Context, None], first: int | None = 20, after: str | None = None
    ) -> WalletConnection:
        request = OwnedWalletsRequest(
            owner_id=str(self.id),
            limit=_forward_page_size(first),
            after=_position(after, "after", decode_cursor),
        )
        page = await info.context.reads.owned_wallets(request)
        edges = []
        for wallet in page.wallets:
            assert wallet.created_at is not None
            edges.append(
                WalletEdge(
                    cursor=encode_cursor(wallet.created_at, wallet.id),
                    node=Wallet.from_domain(wallet),
                )
            )
        return WalletConnection(
            edges=edges,
            page_info=PageInfo.of(
                [e.cursor for e in edges], has_next=page.has_next, has_previous=after is not None
            ),
        )


def _signed(minor: int, currency: Currency) -> DecimalText:
    """An amount with its sign: "-12.50" for money out (Money itself is never negative)."""
    text = _decimal(abs(minor), currency)
    return DecimalText(f"-{text}" if minor < 0 else text)


@strawberry.type
class LedgerEntry:
    id: strawberry.ID
    amount: DecimalText = strawberry.field(
        description="Signed: positive for money in, negative for money out."
    )
    balance_after: DecimalText
    created_at: datetime
    transaction_id: strawberry.Private[UUID]

    @classmethod
    def from_domain(cls, entry: ledger.PostedEntry, currency: Currency) -> LedgerEntry:
        return cls(
            id=strawberry.ID(str(entry.id)),
            amount=_signed(entry.delta, currency),
            balance_after=_decimal(entry.balance_after, currency),
            created_at=entry.created_at,
            transaction_id=entry.transaction_id,
        )

    @strawberry.field
    async def transaction(self, info: Info[Context, None]) -> Transaction:
        transaction = await info.context.transaction_loader.load(self.transaction_id)
        # An entry is read through a wallet the caller sees, and its transaction touches that
        # wallet, so this never refuses; it is here so no read of a transaction skips it.
        if transaction is None or not await info.context.sees(transaction):
            raise TransactionNotFoundError(f"transaction {self.transaction_id} was not found")
        return Transaction.from_domain(transaction)


class TransactionNotFoundError(PublicError):
    extensions = {"code": ErrorCode.TRANSACTION_NOT_FOUND.value}


@strawberry.type
class LedgerEntryEdge:
    cursor: str = strawberry.field(
        description="Opaque; pass it as `after` to get the entries that follow."
    )
    node: LedgerEntry


@strawberry.type
class LedgerEntryConnection:
    edges: list[LedgerEntryEdge]
    page_info: PageInfo


@strawberry.type
class Statement:
    since: datetime
    until: datetime
    opening_balance: DecimalText
    closing_balance: DecimalText
    total_credits: DecimalText = strawberry.field(
        description="The sum of the positive entries in the period."
    )
    total_debits: DecimalText = strawberry.field(
        description="The sum of the negative entries in the period, as a positive number."
    )
    entry_count: int

    @classmethod
    def from_domain(cls, statement: ledger.Statement, currency: Currency) -> Statement:
        return cls(
            since=statement.since,
            until=statement.until,
            opening_balance=_decimal(statement.opening, currency),
            closing_balance=_decimal(statement.closing, currency),
            total_credits=_decimal(statement.credits, currency),
            total_debits=_decimal(statement.debits, currency),
            entry_count=statement.count,
        )
