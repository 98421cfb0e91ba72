"""The tests' own tokens (tests/tokens.py) are what they claim: the good ones name their caller
to the service's verifier, and each bad one is refused by it, so no access test passes for the
wrong reason."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests import tokens
from wallet.domain.callers import ADMIN_SCOPE, DEPOSIT_SCOPE, Caller
from wallet.web.tokens import Unauthenticated, verifier_for

pytestmark = pytest.mark.timeout(10)


async def test_the_testers_token_names_a_funding_service() -> None:
    caller = await verifier_for(tokens.settings()).caller(f"Bearer {tokens.mint()}")
    assert caller == Caller(id=tokens.TESTER, scopes=frozenset({DEPOSIT_SCOPE}))
    assert caller.may_deposit
    assert not caller.is_admin


@pytest.mark.parametrize(
    ("scopes", "admin", "deposits"),
    [((), False, False), (tokens.DEPOSIT, False, True), (tokens.ADMIN, True, True)],
)
async def test_a_minted_token_names_its_subject_and_scopes(
    scopes: tuple[str, ...], admin: bool, deposits: bool
) -> None:
    subject = tokens.caller("other")
    caller = await verifier_for(tokens.settings()).caller(f"Bearer {tokens.mint(subject, scopes)}")
    assert caller.id == subject
    assert caller.scopes == frozenset(scopes)
    assert (caller.is_admin, caller.may_deposit) == (admin, deposits)


async def test_the_header_helper_sends_the_testers_token_or_none_at_all() -> None:
    (value,) = tokens.header().values()
    caller = await verifier_for(tokens.settings()).caller(value)
    assert caller.id == tokens.TESTER
    assert tokens.header(tokens.ANONYMOUS) == {}


@pytest.mark.parametrize(
    "bad",
    [tokens.expired, tokens.wrong_signature, tokens.alg_none],
    ids=["expired", "wrong signature", "alg none"],
)
async def test_each_bad_token_is_refused(bad: Callable[[], str]) -> None:
    with pytest.raises(Unauthenticated):
        await verifier_for(tokens.settings()).caller(f"Bearer {bad()}")


async def test_a_token_for_another_audience_is_refused_where_an_audience_is_set() -> None:
    ours = verifier_for(tokens.settings(jwt_audience="wallet-api"))
    with pytest.raises(Unauthenticated):
        await ours.caller(f"Bearer {tokens.wrong_audience()}")
    theirs = verifier_for(tokens.settings(jwt_audience="someone-else"))
    assert (await theirs.caller(f"Bearer {tokens.wrong_audience()}")).id == tokens.TESTER


async def test_no_token_is_refused() -> None:
    with pytest.raises(Unauthenticated):
        await verifier_for(tokens.settings()).caller(None)


def test_the_admin_scope_is_the_services() -> None:
    assert tokens.ADMIN == (ADMIN_SCOPE,)
