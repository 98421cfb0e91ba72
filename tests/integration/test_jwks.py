"""Keys from an identity provider's JWKS, served over real HTTP by a local server: RS256 and
ES256 tokens are accepted, a rotated key is picked up without a restart, junk key ids cannot
make us fetch more than once per interval, and a provider that is down costs a refusal and
one log line, never a traceback."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.jwks import AUDIENCE, Provider, SigningKey, serve_jwks
from wallet.domain.callers import Caller
from wallet.web.tokens import KeySetFromUrl, TokenVerifier, Unauthenticated

pytestmark = pytest.mark.timeout(20)

# Short, so the tests wait little; the service's own is REFRESH_AT_MOST_EVERY.
INTERVAL = 0.3


@pytest.fixture(scope="module")
def rsa_keys() -> list[SigningKey]:
    return [SigningKey(f"rsa-{n}", "RS256", rsa.generate_private_key(65537, 2048)) for n in (1, 2)]


@pytest.fixture(scope="module")
def ec_key() -> SigningKey:
    return SigningKey("ec-1", "ES256", ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture
def provider() -> Iterator[tuple[Provider, str]]:
    state = Provider()
    with serve_jwks(state) as url:
        yield state, url


def _segment(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _verifier(url: str, **options: float) -> tuple[TokenVerifier, KeySetFromUrl]:
    keys = KeySetFromUrl(url, refresh_at_most_every=INTERVAL, timeout=2.0, **options)
    return TokenVerifier(keys, audience=AUDIENCE, leeway=5.0), keys


async def _refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as refused:
        await verifier.caller(f"Bearer {token}")
    return refused.value.reason


async def test_rs256_and_es256_tokens_are_verified_with_the_served_keys_fetched_once(
    provider: tuple[Provider, str], rsa_keys: list[SigningKey], ec_key: SigningKey
) -> None:
    state, url = provider
    state.keys = [rsa_keys[0].public_jwk(), ec_key.public_jwk()]
    verifier, _ = _verifier(url)
    rsa_token = rsa_keys[0].sign(scope="wallet:deposit")
    assert await verifier.caller(f"Bearer {rsa_token}") == Caller(
        "alice", frozenset({"wallet:deposit"})
    )
    assert (await verifier.caller(f"Bearer {ec_key.sign('bob')}")).id == "bob"
    for _ in range(20):
        await verifier.caller(f"Bearer {rsa_token}")
    assert state.requests == 1  # the keys are cached


async def test_a_token_whose_algorithm_is_not_its_keys_is_refused(
    provider: tuple[Provider, str], rsa_keys: list[SigningKey], ec_key: SigningKey
) -> None:
    state, url = provider
    state.keys = [rsa_keys[0].public_jwk(), ec_key.public_jwk()]
    verifier, _ = _verifier(url)
    # Signed by the EC key, but naming the RSA key's id: the RSA key does not verify it.
    now = int(time.time())
    body = {"sub": "mallory", "aud": AUDIENCE, "exp": now + 60}
    forged = jwt.encode(body, ec_key.private, algorithm="ES256", headers={"kid": "rsa-1"})
    assert "ES256" in await _refused(verifier, forged)


async def test_an_hs256_token_signed_with_a_served_public_key_is_refused(
    provider: tuple[Provider, str], rsa_keys: list[SigningKey]
) -> None:
    state, url = provider
    jwk = rsa_keys[0].public_jwk()
    state.keys = [jwk]
    verifier, _ = _verifier(url)
    assert (await verifier.caller(f"Bearer {rsa_keys[0].sign()}")).id == "alice"
    # The attack: the provider's public key (anyone can read it) used as an HMAC secret.
    # PyJWT will not sign so, so the forgery is written by hand.
    public_pem = (
        rsa_keys[0]
        .private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    now = int(time.time())
    signing_input = (
        f"{_segment({'alg': 'HS256', 'typ': 'JWT', 'kid': 'rsa-1'})}."
        f"{_segment({'sub': 'mallory', 'aud': AUDIENCE, 'exp': now + 60})}"
    )
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    assert "HS256" in await _refused(verifier, forged)
    # A symmetric key published in the set is never used either.
    shared = b"a-shared-secret-of-thirty-two-bytes-or-more"
    k = base64.urlsafe_b64encode(shared).rstrip(b"=").decode()
    state.keys = [jwk, {"kty": "oct", "kid": "shared", "k": k}]
    await asyncio.sleep(INTERVAL)
    forged = jwt.encode(
        {"sub": "mallory", "aud": AUDIENCE, "exp": now + 60},
        shared,
        algorithm="HS256",
        headers={"kid": "shared"},
    )
    await _refused(verifier, forged)


async def test_a_rotated_key_is_accepted_once_served_without_a_restart(
    provider: tuple[Provider, str], rsa_keys: list[SigningKey]
) -> None:
    old, new = rsa_keys
    state, url = provider
    state.keys = [old.public_jwk()]
    verifier, _ = _verifier(url)
    assert (await verifier.caller(f"Bearer {old.sign()}")).id == "alice"
    # The provider publishes a new key beside the old; the first token signed with it comes
    # too soon after the last fetch to fetch again, the next one after the interval is served.
    state.keys = [old.public_jwk(), new.public_jwk()]
    assert "rsa-2" in await _refused(verifier, new.sign())
    assert state.requests == 1
    await asyncio.sleep(INTERVAL)
    assert (await verifier.caller(f"Bearer {new.sign('carol')}")).id == "carol"
    assert (await verifier.caller(f"Bearer {old.sign()}")).id == "alice"
    assert state.requests == 2


async def test_junk_key_ids_fetch_the_keys_at_most_once_per_interval(
    provider: tuple[Provider, str], rsa_keys: list[SigningKey]
) -> None:
    signer, unserved = rsa_keys
    state, url = provider
    state.keys = [signer.public_jwk()]
    verifier, keys = _verifier(url)
    await verifier.caller(f"Bearer {signer.sign()}")
    assert state.requests == 1
    junk = [
        jwt.encode(
            {"sub": "x", "aud": AUDIENCE, "exp": int(time.time()) + 60},
            unserved.private,
            algorithm="RS256",
            headers={"kid": f"junk-{n}"},
        )
        for n in range(50)
    ]
    # Just after a fetch: none of them fetches again.
    for token in junk[:25]:
        await _refused(verifier, token)
    assert state.requests == 1
    # Once the interval is over, fifty at once share one fetch.
    await asyncio.sleep(INTERVAL)
    results = await asyncio.gather(
        *(verifier.caller(f"Bearer {t}") for t in junk), return_exceptions=True
    )
    assert all(isinstance(r, Unauthenticated) for r in results)
    assert state.requests == 2
    assert keys.fetches == 2


async def test_a_provider_that_is_down_costs_a_refusal_and_one_log_line(
    provider: tuple[Provider, str], rsa_keys: list[SigningKey], caplog: pytest.LogCaptureFixture
) -> None:
    state, url = provider
    state.keys = [rsa_keys[0].public_jwk()]
    state.down = True
    verifier, _ = _verifier(url)
    token = rsa_keys[0].sign()
    caplog.set_level(logging.WARNING, logger="wallet.tokens")
    for _ in range(10):
        assert "unavailable" in await _refused(verifier, token)
    [line] = caplog.records
    assert line.levelno == logging.WARNING
    assert line.exc_info is None
    assert url in line.getMessage()
    assert "503" in line.getMessage()
    assert state.requests == 1
    # Back up: the next request after the interval is served, with no restart.
    state.down = False
    await asyncio.sleep(INTERVAL)
    assert (await verifier.caller(f"Bearer {token}")).id == "alice"


async def test_a_provider_nobody_answers_for_is_a_refusal_too(
    rsa_keys: list[SigningKey], caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    verifier, _ = _verifier(f"http://127.0.0.1:{port}/jwks.json")
    caplog.set_level(logging.WARNING, logger="wallet.tokens")
    assert "unavailable" in await _refused(verifier, rsa_keys[0].sign())
    [line] = caplog.records
    assert line.exc_info is None


async def test_keys_held_keep_serving_while_the_provider_is_down_after_they_age(
    provider: tuple[Provider, str], rsa_keys: list[SigningKey], caplog: pytest.LogCaptureFixture
) -> None:
    state, url = provider
    state.keys = [rsa_keys[0].public_jwk()]
    verifier, _ = _verifier(url, max_age=INTERVAL)
    token = rsa_keys[0].sign()
    assert (await verifier.caller(f"Bearer {token}")).id == "alice"
    state.down = True
    await asyncio.sleep(INTERVAL * 1.5)
    caplog.set_level(logging.WARNING, logger="wallet.tokens")
    # Another token: the one already verified would be answered from memory, keys unasked.
    again = rsa_keys[0].sign(jti="another")
    assert (await verifier.caller(f"Bearer {again}")).id == "alice"
    assert state.requests == 2
    assert len(caplog.records) == 1
