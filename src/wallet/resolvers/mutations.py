from __future__ import annotations

import strawberry
from strawberry.types import Info

from wallet.domain import services
from wallet.domain.errors import WalletError
from wallet.domain.group_commit import Request, run_alone
from wallet.domain.model import Transaction as DomainTransaction
from wallet.schema.context import Context
from wallet.schema.types import (
    CaptureHoldInput,
    CreateWalletInput,
    CreateWalletPayload,
    DepositInput,
    Hold,
    HoldPayload,
    PlaceHoldInput,
    Transaction,
    TransactionPayload,
    TransferInput,
    UserError,
    VoidHoldInput,
    Wallet,
    WithdrawInput,
)


def _accepted(info: Info[Context, None], transaction: DomainTransaction) -> TransactionPayload:
    info.context.forget(transaction.wallet_ids)
    return TransactionPayload(transaction=Transaction.from_domain(transaction), errors=[])


def _rejected(error: WalletError) -> TransactionPayload:
    return TransactionPayload(transaction=None, errors=[UserError.from_domain(error)])


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
        command = services.Deposit(input.wallet_id, input.amount, input.client_transaction_id)
        try:
            transaction = await info.context.deposit(Request(info.context.caller, command))
        except WalletError as error:
            return _rejected(error)
        return _accepted(info, transaction)

    @strawberry.mutation
    async def withdraw(self, info: Info[Context, None], input: WithdrawInput) -> TransactionPayload:
        command = services.Withdraw(input.wallet_id, input.amount, input.client_transaction_id)
        try:
            transaction = await info.context.submit(Request(info.context.caller, command))
        except WalletError as error:
            return _rejected(error)
        return _accepted(info, await info.context.dispatch(transaction))

    @strawberry.mutation
    async def transfer(self, info: Info[Context, None], input: TransferInput) -> TransactionPayload:
        command = services.Transfer(
            input.from_wallet_id, input.to_wallet_id, input.amount, input.client_transaction_id
        )
        try:
            transaction = await info.context.submit(Request(info.context.caller, command))
        except WalletError as error:
            return _rejected(error)
        return _accepted(info, await info.context.dispatch(transaction))

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
        try:
            hold = await run_alone(
                info.context.uow_factory, services.place_hold, info.context.caller, command
            )
        except WalletError as error:
            return HoldPayload(hold=None, errors=[UserError.from_domain(error)])
        info.context.forget((hold.wallet_id,))
        return HoldPayload(hold=Hold.from_domain(hold), errors=[])

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
        try:
            hold = await run_alone(
                info.context.uow_factory, services.void_hold, info.context.caller, command
            )
        except WalletError as error:
            return HoldPayload(hold=None, errors=[UserError.from_domain(error)])
        info.context.forget((hold.wallet_id,))
        return HoldPayload(hold=Hold.from_domain(hold), errors=[])
