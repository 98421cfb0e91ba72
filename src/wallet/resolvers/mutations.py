from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import strawberry
from strawberry.types import Info

from wallet.domain import services
from wallet.domain.callers import Caller
from wallet.domain.errors import WalletError
from wallet.domain.group_commit import Request, run_alone, run_transfer_batch
from wallet.domain.model import Hold as DomainHold
from wallet.domain.model import Transaction as DomainTransaction
from wallet.domain.ports import UnitOfWork
from wallet.schema.context import Context
from wallet.schema.types import (
    CaptureHoldInput,
    CreateWalletInput,
    CreateWalletPayload,
    DepositInput,
    Hold,
    HoldPayload,
    PlaceHoldInput,
    ReverseTransactionInput,
    Transaction,
    TransactionPayload,
    TransferBatchInput,
    TransferBatchPayload,
    TransferInput,
    UserError,
    VoidHoldInput,
    Wallet,
    WithdrawInput,
)

C = TypeVar("C")


def _accepted(info: Info[Context, None], transaction: DomainTransaction) -> TransactionPayload:
    info.context.forget(transaction.wallet_ids)
    return TransactionPayload(transaction=Transaction.from_domain(transaction), errors=[])


def _rejected(error: WalletError, at: tuple[str, ...] = ("input",)) -> TransactionPayload:
    return TransactionPayload(transaction=None, errors=[UserError.from_domain(error, at)])


async def _hold_payload(
    info: Info[Context, None],
    use_case: Callable[[Caller, UnitOfWork, C], Awaitable[DomainHold]],
    command: C,
) -> HoldPayload:
    """Run a use case that places or ends a hold, alone, and answer with the hold."""
    context = info.context
    try:
        hold = await run_alone(context.uow_factory, use_case, context.caller, command)
    except WalletError as error:
        return HoldPayload(hold=None, errors=[UserError.from_domain(error)])
    context.forget((hold.wallet_id,))
    return HoldPayload(hold=Hold.from_domain(hold), errors=[])


def _transfer(input: TransferInput) -> services.Transfer:
    """The transfer asked for, alone or in a batch."""
    return services.Transfer(
        input.from_wallet_id,
        input.to_wallet_id,
        input.amount,
        input.client_transaction_id,
        input.description,
    )


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def create_wallet(
        self, info: Info[Context, None], input: CreateWalletInput
    ) -> CreateWalletPayload:
        command = services.CreateWallet(
            currency=input.currency,
            initial_balance=input.initial_balance,
            client_transaction_id=input.client_transaction_id,
            owner_id=input.owner_id,
        )
        try:
            wallet = await run_alone(
                info.context.uow_factory, services.create_wallet, info.context.caller, command
            )
        except WalletError as error:
            return CreateWalletPayload(wallet=None, errors=[UserError.from_domain(error)])
        return CreateWalletPayload(wallet=Wallet.from_domain(wallet), errors=[])

    @strawberry.mutation
    async def deposit(self, info: Info[Context, None], input: DepositInput) -> TransactionPayload:
        command = services.Deposit(
            input.wallet_id, input.amount, input.client_transaction_id, input.description
        )
        try:
            transaction = await info.context.deposit(Request(info.context.caller, command))
        except WalletError as error:
            return _rejected(error)
        return _accepted(info, transaction)

    @strawberry.mutation
    async def withdraw(self, info: Info[Context, None], input: WithdrawInput) -> TransactionPayload:
        command = services.Withdraw(
            input.wallet_id, input.amount, input.client_transaction_id, input.description
        )
        try:
            transaction = await info.context.submit(Request(info.context.caller, command))
        except WalletError as error:
            return _rejected(error)
        (transaction,) = await info.context.dispatch([transaction])
        return _accepted(info, transaction)

    @strawberry.mutation
    async def transfer(self, info: Info[Context, None], input: TransferInput) -> TransactionPayload:
        command = _transfer(input)
        try:
            transaction = await info.context.submit(Request(info.context.caller, command))
        except WalletError as error:
            return _rejected(error)
        (transaction,) = await info.context.dispatch([transaction])
        return _accepted(info, transaction)

    @strawberry.mutation
    async def transfer_batch(
        self, info: Info[Context, None], input: TransferBatchInput
    ) -> TransferBatchPayload:
        batch = services.TransferBatch([_transfer(t) for t in input.transfers], atomic=input.atomic)
        context = info.context
        try:
            outcomes = await run_transfer_batch(context.uow_factory, context.caller, batch)
        except WalletError as error:  # the batch as a whole
            return TransferBatchPayload(results=[], errors=[UserError.from_domain(error)])
        accepted = [o for o in outcomes if isinstance(o, DomainTransaction)]
        settled = iter(await context.dispatch(accepted))
        results = []
        for n, outcome in enumerate(outcomes):
            if isinstance(outcome, DomainTransaction):
                results.append(_accepted(info, next(settled)))
            elif isinstance(outcome, WalletError):
                results.append(_rejected(outcome, ("input", "transfers", str(n))))
            else:
                raise outcome  # not a refusal: a bug, reported as INTERNAL
        return TransferBatchPayload(results=results, errors=[])

    @strawberry.mutation
    async def place_hold(self, info: Info[Context, None], input: PlaceHoldInput) -> HoldPayload:
        command = services.PlaceHold(
            wallet_id=input.wallet_id,
            amount=input.amount,
            client_transaction_id=input.client_transaction_id,
            receiver_wallet_id=input.receiver_wallet_id,
            expires_in_seconds=input.expires_in_seconds,
            description=input.description,
        )
        return await _hold_payload(info, services.place_hold, command)

    @strawberry.mutation
    async def capture_hold(
        self, info: Info[Context, None], input: CaptureHoldInput
    ) -> TransactionPayload:
        command = services.CaptureHold(input.hold_id, input.client_transaction_id, input.amount)
        try:
            transaction = await run_alone(
                info.context.uow_factory, services.capture_hold, info.context.caller, command
            )
        except WalletError as error:
            return _rejected(error)
        return _accepted(info, transaction)

    @strawberry.mutation
    async def void_hold(self, info: Info[Context, None], input: VoidHoldInput) -> HoldPayload:
        command = services.VoidHold(input.hold_id, input.client_transaction_id)
        return await _hold_payload(info, services.void_hold, command)

    @strawberry.mutation(
        description="Return money of a COMPLETED deposit, withdrawal or transfer, as a "
        "REVERSAL: PENDING at first, like a transfer."
    )
    async def reverse_transaction(
        self, info: Info[Context, None], input: ReverseTransactionInput
    ) -> TransactionPayload:
        command = services.ReverseTransaction(
            input.transaction_id, input.client_transaction_id, input.amount, input.description
        )
        context = info.context
        try:
            reversal = await run_alone(
                context.uow_factory, services.reverse_transaction, context.caller, command
            )
        except WalletError as error:
            return _rejected(error)
        (reversal,) = await context.dispatch([reversal])
        return _accepted(info, reversal)
