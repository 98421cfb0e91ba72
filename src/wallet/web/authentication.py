"""Who is asking: the edge names each request's caller before anything of it runs.

With WALLET_REQUIRE_TOKENS, the bearer token names it (web/tokens.py): over HTTP (and SSE)
the `Authorization` header, on a WebSocket the `connection_init` payload's `Authorization`
or else the upgrade request's header. Without, every request is ANONYMOUS.
"""

from __future__ import annotations

from starlette.types import Scope

from wallet.config import Settings
from wallet.domain.callers import ADMIN_SCOPE, Caller
from wallet.schema.context import Identity
from wallet.web.tokens import TokenVerifier, verifier_for

# With WALLET_REQUIRE_TOKENS=false (a throwaway experiment; production refuses it) every
# request is this caller, who may do anything.
ANONYMOUS = Caller(id="anonymous", scopes=frozenset({ADMIN_SCOPE}))

# Where the edge leaves the request's Identity in its ASGI scope, for get_context.
IDENTITY = "wallet.identity"


class Authenticator:
    """Names callers: by their tokens when required (`verifier`), else ANONYMOUS."""

    def __init__(self, verifier: TokenVerifier | None = None) -> None:
        self._verifier = verifier

    @property
    def required(self) -> bool:
        return self._verifier is not None

    async def caller(self, authorization: str | None) -> Caller:
        """The caller this `Authorization` value names; Unauthenticated when it names none."""
        if self._verifier is None:
            return ANONYMOUS
        return await self._verifier.caller(authorization)


def authenticator_for(settings: Settings) -> Authenticator:
    """Built once at start-up; KeysNotConfigured when tokens are required without keys."""
    return Authenticator(verifier_for(settings) if settings.require_tokens else None)


def identity_of(scope: Scope) -> Identity:
    """The request's Identity as the edge left it (unknown when no edge saw it)."""
    identity = scope.get(IDENTITY)
    return identity if isinstance(identity, Identity) else Identity()


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None
