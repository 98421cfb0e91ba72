"""Bearer tokens for the tests, as a client would hold them: minted with `issue_token` from
the run's own secret, which every `wallet` process the tests start is given
(WALLET_JWT_SECRET in `service_env`), and every in-process app too (`settings()`).

    mint(subject, scopes, ttl)      a good token
    expired(subject)                well signed, but its exp is an hour gone
    wrong_signature(subject)        signed with another secret
    wrong_audience(subject)         for another audience (refused where one is configured)
    alg_none(subject)               unsigned, `alg: none`, built by hand

The default caller of the run, TESTER, is a funding service (wallet:deposit): it may deposit
and fund the wallets it creates, which it then owns.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from collections.abc import Iterable
from typing import Any

from wallet.config import Settings
from wallet.domain.callers import ADMIN_SCOPE, DEPOSIT_SCOPE
from wallet.web.tokens import issue_token

# One secret per test run (module state, so each process running tests has its own).
SECRET = secrets.token_urlsafe(48)
TESTER = f"tester-{uuid.uuid4().hex[:10]}"
DEPOSIT: tuple[str, ...] = (DEPOSIT_SCOPE,)
ADMIN: tuple[str, ...] = (ADMIN_SCOPE,)
# Long enough for the longest run; the matrix's expired token is a separate helper.
TEST_TTL = 24 * 3600.0
# Variables the run's processes must not take from the machine: keys or checks other than ours.
FOREIGN_VARIABLES = ("WALLET_JWKS_URL", "WALLET_JWT_ISSUER", "WALLET_JWT_AUDIENCE")


def settings(**given: Any) -> Settings:
    """Settings holding the run's secret and no other token setting, plus `given`."""
    token_settings: dict[str, Any] = {
        "jwt_secret": SECRET,
        "jwks_url": None,
        "jwt_issuer": None,
        "jwt_audience": None,
    }
    return Settings(**{**token_settings, **given})


def environment() -> dict[str, str]:
    """The token settings of a `wallet` process of this run (FOREIGN_VARIABLES left out)."""
    return {"WALLET_JWT_SECRET": SECRET}


def mint(subject: str = TESTER, scopes: Iterable[str] = DEPOSIT, ttl: float = TEST_TTL) -> str:
    """A token for `subject` with `scopes`, signed with the run's secret."""
    return issue_token(settings(), subject, scopes, ttl=ttl)


def caller(prefix: str) -> str:
    """A subject no other test uses, e.g. caller("other") -> "other-1f3a9c0b"."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def bearer(token: str) -> dict[str, str]:
    """The HTTP header (or connection_init payload) that carries `token`."""
    return {"Authorization": f"Bearer {token}"}


def expired(subject: str = TESTER, scopes: Iterable[str] = DEPOSIT) -> str:
    """Well signed, expired an hour ago (far beyond any leeway)."""
    return mint(subject, scopes, ttl=-3600)


def wrong_signature(subject: str = TESTER, scopes: Iterable[str] = DEPOSIT) -> str:
    """Signed with a secret the service does not hold."""
    return issue_token(settings(jwt_secret=secrets.token_urlsafe(48)), subject, scopes)


def wrong_audience(subject: str = TESTER, scopes: Iterable[str] = DEPOSIT) -> str:
    """Well signed, for an audience that is not ours: refused where WALLET_JWT_AUDIENCE is set."""
    return issue_token(settings(jwt_audience="someone-else"), subject, scopes)


def alg_none(subject: str = TESTER, scopes: Iterable[str] = DEPOSIT) -> str:
    """`alg: none` and no signature, as an attacker would forge one."""
    now = int(time.time())
    claims = {"sub": subject, "scope": " ".join(scopes), "iat": now, "exp": now + 3600}
    return f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment(claims)}."


def _segment(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


# The token of a client that sends none: Api(url, token=ANONYMOUS), and as much for Subscriber.
ANONYMOUS = ""


def header(token: str | None = None) -> dict[str, str]:
    """The Authorization header of `token` (the tester's when not given; none when ANONYMOUS),
    for tests that speak HTTP without the client: `httpx.AsyncClient(headers=header())`."""
    token = mint() if token is None else token
    return bearer(token) if token else {}
