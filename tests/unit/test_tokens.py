"""A bearer token names its caller only when it is well signed, with an allowed algorithm, not
expired, for us (issuer, audience), and names a subject; anything else is Unauthenticated."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import Mapping
from typing import Any

import jwt
import pytest
from pydantic import SecretStr

from wallet.config import Settings
from wallet.domain.callers import RESERVED_IDS, Caller
from wallet.web.tokens import (
    KeySetFromUrl,
    KeysNotConfigured,
    SharedSecret,
    TokenVerifier,
    Unauthenticated,
    issue_token,
    verifier_for,
)

pytestmark = pytest.mark.timeout(10)

SECRET = "a-test-secret-of-thirty-two-bytes-at-least"
ISSUER = "https://issuer.example"
AUDIENCE = "wallet-api"


@pytest.fixture(autouse=True)
def no_wallet_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the settings each test gives: none of the machine's own WALLET_ variables."""
    for name in os.environ:
        if name.startswith("WALLET_"):
            monkeypatch.delenv(name)


def _verifier(**checks: Any) -> TokenVerifier:
    return TokenVerifier(SharedSecret(SECRET), leeway=5.0, **checks)


def _token(claims: dict[str, Any] | None = None, *, key: str = SECRET, **headers: Any) -> str:
    now = int(time.time())
    body = {"sub": "alice", "iat": now, "exp": now + 60, **(claims or {})}
    body = {name: value for name, value in body.items() if value is not None}
    return jwt.encode(body, key, algorithm="HS256", headers=headers or None)


def _segment(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


async def _refusal(verifier: TokenVerifier, authorization: str | None) -> str:
    with pytest.raises(Unauthenticated) as refused:
        await verifier.caller(authorization)
    return refused.value.reason


async def test_a_valid_hs256_token_names_its_caller_and_scopes() -> None:
    token = _token({"scope": "wallet:deposit openid"})
    caller = await _verifier().caller(f"Bearer {token}")
    assert caller == Caller(id="alice", scopes=frozenset({"wallet:deposit", "openid"}))
    assert caller.may_deposit
    assert not caller.is_admin


async def test_the_bearer_scheme_is_read_whatever_its_case() -> None:
    assert (await _verifier().caller(f"bearer {_token()}")).id == "alice"


@pytest.mark.parametrize(
    ("claims", "scopes"),
    [
        ({}, set()),
        ({"scope": "wallet:admin"}, {"wallet:admin"}),
        ({"scope": ["wallet:deposit", "wallet:admin"]}, {"wallet:deposit", "wallet:admin"}),
        ({"scp": "wallet:deposit"}, {"wallet:deposit"}),
        ({"scp": ["wallet:admin"]}, {"wallet:admin"}),
    ],
)
async def test_scopes_are_read_from_a_string_or_a_list_in_scope_or_scp(
    claims: dict[str, Any], scopes: set[str]
) -> None:
    caller = await _verifier().caller(f"Bearer {_token(claims)}")
    assert caller.scopes == scopes


def test_an_admin_may_deposit_and_a_caller_without_scopes_may_neither() -> None:
    admin = Caller(id="root", scopes=frozenset({"wallet:admin"}))
    assert admin.is_admin
    assert admin.may_deposit
    nobody = Caller(id="bob")
    assert not nobody.is_admin
    assert not nobody.may_deposit


async def test_a_scope_claim_of_another_shape_is_refused() -> None:
    reason = await _refusal(_verifier(), f"Bearer {_token({'scope': 7})}")
    assert "scope" in reason


async def test_an_unsigned_token_alg_none_is_refused() -> None:
    now = int(time.time())
    header = _segment({"alg": "none", "typ": "JWT"})
    body = _segment({"sub": "alice", "exp": now + 60})
    for token in (f"{header}.{body}.", f"{header}.{body}"):
        reason = await _refusal(_verifier(), f"Bearer {token}")
        assert "none" in reason or "malformed" in reason


async def test_an_expired_token_is_refused_beyond_the_leeway_only() -> None:
    now = int(time.time())
    reason = await _refusal(_verifier(), f"Bearer {_token({'exp': now - 30})}")
    assert "Expired" in reason
    # Two seconds late is within five seconds of leeway: clocks differ.
    assert (await _verifier().caller(f"Bearer {_token({'exp': now - 2})}")).id == "alice"


async def test_a_token_without_exp_is_refused() -> None:
    reason = await _refusal(_verifier(), f"Bearer {_token({'exp': None})}")
    assert "exp" in reason


async def test_a_token_signed_with_another_secret_is_refused() -> None:
    token = _token(key="another-secret-also-thirty-two-bytes-long")
    assert "Signature" in await _refusal(_verifier(), f"Bearer {token}")


async def test_a_token_whose_signature_was_changed_is_refused() -> None:
    token = _token()
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    await _refusal(_verifier(), f"Bearer {tampered}")


async def test_a_token_for_another_audience_or_from_another_issuer_is_refused() -> None:
    verifier = _verifier(issuer=ISSUER, audience=AUDIENCE)
    good = {"iss": ISSUER, "aud": AUDIENCE}
    assert (await verifier.caller(f"Bearer {_token(good)}")).id == "alice"
    for claims in (
        {**good, "aud": "another-api"},
        {**good, "aud": None},
        {**good, "iss": "https://elsewhere.example"},
        {**good, "iss": None},
    ):
        await _refusal(verifier, f"Bearer {_token(claims)}")


async def test_issuer_and_audience_are_not_checked_when_not_configured() -> None:
    token = _token({"iss": "anyone", "aud": "anything"})
    assert (await _verifier().caller(f"Bearer {token}")).id == "alice"


@pytest.mark.parametrize("subject", [None, "", "   ", 42])
async def test_a_token_without_a_subject_is_refused(subject: object) -> None:
    await _refusal(_verifier(), f"Bearer {_token({'sub': subject})}")


async def test_an_hs256_token_is_refused_by_a_verifier_holding_an_identity_providers_keys() -> None:
    keys = KeySetFromUrl("http://127.0.0.1:9/jwks.json")
    verifier = TokenVerifier(keys, leeway=5.0)
    reason = await _refusal(verifier, f"Bearer {_token(kid='k1')}")
    assert "HS256" in reason
    assert keys.fetches == 0  # refused before any key was looked for


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "   ",
        "Bearer",
        "Bearer ",
        "Basic YWxpY2U6c2VjcmV0",
        "Token abc.def.ghi",
        "Bearer not-a-jwt",
        "Bearer a.b.c",
        "Bearer a.b c.d",
        "Bearer ....",
        "Bearer \x00\x01",
        f"Bearer {_segment({'alg': ['HS256']})}.{_segment({'sub': 'a'})}.x",
    ],
)
async def test_a_malformed_authorization_header_is_refused(authorization: str | None) -> None:
    await _refusal(_verifier(), authorization)


async def test_a_token_without_the_bearer_scheme_is_refused_even_when_valid() -> None:
    assert "Bearer" in await _refusal(_verifier(), _token())


def test_settings_name_exactly_one_source_of_keys() -> None:
    with pytest.raises(KeysNotConfigured, match="WALLET_JWT_SECRET or WALLET_JWKS_URL"):
        verifier_for(Settings(jwt_secret=None, jwks_url=None))
    with pytest.raises(KeysNotConfigured, match="not both"):
        verifier_for(Settings(jwt_secret=SECRET, jwks_url="https://idp.example/jwks"))
    with pytest.raises(KeysNotConfigured, match="32 bytes"):
        verifier_for(Settings(jwt_secret="short"))
    with pytest.raises(KeysNotConfigured, match="WALLET_JWKS_URL"):
        verifier_for(Settings(jwks_url="file:///etc/passwd"))


def test_a_blank_variable_is_no_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WALLET_JWKS_URL", "")
    monkeypatch.setenv("WALLET_JWT_SECRET", SECRET)
    monkeypatch.setenv("WALLET_JWT_AUDIENCE", " ")
    settings = Settings()
    assert (settings.jwks_url, settings.jwt_audience) == (None, None)
    assert isinstance(verifier_for(settings), TokenVerifier)


async def test_an_issued_token_is_accepted_by_the_verifier_of_the_same_settings() -> None:
    settings = Settings(jwt_secret=SECRET, jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    token = issue_token(settings, "carol", ["wallet:admin"], ttl=60)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == ISSUER
    assert claims["aud"] == AUDIENCE
    assert claims["exp"] - claims["iat"] == 60
    caller = await verifier_for(settings).caller(f"Bearer {token}")
    assert caller == Caller(id="carol", scopes=frozenset({"wallet:admin"}))


@pytest.mark.parametrize("subject", [*sorted(RESERVED_IDS), "a\x00b", "\ud800z", "x" * 256, " "])
async def test_a_token_whose_sub_cannot_name_a_caller_is_refused_and_none_is_issued(
    subject: str,
) -> None:
    settings = Settings(jwt_secret=SecretStr("s" * 32))
    forged = jwt.encode({"sub": subject, "exp": int(time.time()) + 60}, "s" * 32, algorithm="HS256")

    with pytest.raises(Unauthenticated):
        await verifier_for(settings).caller(f"Bearer {forged}")
    with pytest.raises(ValueError, match="cannot name a caller"):
        issue_token(settings, subject)


class CountedKeys:
    """The shared secret's keys, counting how often a token's key is looked up."""

    def __init__(self) -> None:
        self.inner = SharedSecret(SECRET)
        self.algorithms = self.inner.algorithms
        self.lookups = 0

    async def key_for(self, header: Mapping[str, Any]) -> Any:
        self.lookups += 1
        return await self.inner.key_for(header)


async def test_a_token_verified_once_is_remembered_until_it_expires_and_no_longer() -> None:
    keys = CountedKeys()
    verifier = TokenVerifier(keys, leeway=0)
    now = int(time.time())
    soon = jwt.encode({"sub": "alice", "exp": now + 2}, SECRET, algorithm="HS256")
    other = jwt.encode({"sub": "bob", "exp": now + 60}, SECRET, algorithm="HS256")

    for _ in range(3):
        assert (await verifier.caller(f"Bearer {soon}")).id == "alice"
    assert keys.lookups == 1
    assert (await verifier.caller(f"Bearer {other}")).id == "bob"
    assert keys.lookups == 2
    # A token that differs by one character of its signature is verified, and refused.
    tampered = soon[:-2] + ("A" if soon[-2] != "A" else "B") + soon[-1]
    with pytest.raises(Unauthenticated):
        await verifier.caller(f"Bearer {tampered}")

    await asyncio.sleep(2.1)  # the point: past the token's exp
    with pytest.raises(Unauthenticated):
        await verifier.caller(f"Bearer {soon}")
