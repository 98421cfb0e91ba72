"""Callers the tests act as, where who is asking is not what a test is about."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from wallet.domain.callers import ADMIN_SCOPE, DEPOSIT_SCOPE, Caller
from wallet.domain.group_commit import Request

C = TypeVar("C")

# May do anything to any wallet: the tests of the ledger's rules act as this one.
ADMIN = Caller("test-admin", frozenset({ADMIN_SCOPE}))
# The funding service: deposits into any wallet, sees none but its own.
FUNDER = Caller("test-funder", frozenset({DEPOSIT_SCOPE}))
ALICE = Caller("alice")
BOB = Caller("bob")


def requests(caller: Caller, commands: Iterable[C]) -> list[Request[C]]:
    """The commands, each as this caller's request (what run_together takes)."""
    return [Request(caller, command) for command in commands]
