"""`wallet token` prints a token the verifier of the same settings accepts; without a secret it
says which variable is missing, in one line, and exits 2."""

from __future__ import annotations

import os

import jwt
import pytest

from wallet import cli
from wallet.config import Settings
from wallet.domain.callers import Caller
from wallet.web.tokens import verifier_for

pytestmark = pytest.mark.timeout(10)

SECRET = "a-test-secret-of-thirty-two-bytes-at-least"


@pytest.fixture(autouse=True)
def no_wallet_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what each test sets: none of the machine's own WALLET_ variables."""
    for name in os.environ:
        if name.startswith("WALLET_"):
            monkeypatch.delenv(name)


async def test_the_printed_token_names_the_subject_and_scopes_for_the_configured_audience(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WALLET_JWT_SECRET", SECRET)
    monkeypatch.setenv("WALLET_JWT_ISSUER", "https://wallet.example")
    monkeypatch.setenv("WALLET_JWT_AUDIENCE", "wallet-api")
    command = ["token", "--subject", "dev", "--scope", "wallet:deposit wallet:admin"]
    assert cli.main([*command, "--ttl", "120"]) == 0
    printed = capsys.readouterr()
    assert printed.err == ""
    token = printed.out.strip()
    assert printed.out == token + "\n"
    caller = await verifier_for(Settings()).caller(f"Bearer {token}")
    assert caller == Caller(id="dev", scopes=frozenset({"wallet:deposit", "wallet:admin"}))
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 120
    assert (claims["iss"], claims["aud"]) == ("https://wallet.example", "wallet-api")


def test_without_a_secret_it_names_the_variable_in_one_line_and_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["token", "--subject", "dev"]) == 2
    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err.count("\n") == 1
    assert "WALLET_JWT_SECRET" in printed.err


def test_a_secret_too_short_to_sign_with_is_refused_the_same_way(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WALLET_JWT_SECRET", "short")
    assert cli.main(["token", "--subject", "dev"]) == 2
    assert "at least 32 bytes" in capsys.readouterr().err


def test_an_empty_subject_is_refused_the_same_way(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WALLET_JWT_SECRET", SECRET)
    assert cli.main(["token", "--subject", " "]) == 2
    printed = capsys.readouterr()
    assert printed.out == ""
    assert "subject" in printed.err
