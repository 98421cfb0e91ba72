"""Bearer tokens: the `Authorization` header's JWT, verified, becomes the request's Caller.

Keys come from exactly one place, and each place allows its own algorithms only:

    SharedSecret    WALLET_JWT_SECRET   HS256
    KeySetFromUrl   WALLET_JWKS_URL     RS256, ES256 (keys fetched, cached, refreshed on an
                                        unknown `kid` at most once every few seconds)

so `none` is never accepted, and an HS256 token is refused where the keys are an identity
provider's public keys (the classic confusion: its public key used as an HMAC secret).
A token must carry `exp` and a non-empty string `sub`; `iss` and `aud` are checked when
configured. Scopes are read from `scope`, else `scp`: a space-separated string or a JSON list
of strings.

    Unauthenticated(reason)     any header we do not accept; `reason` is for the log, the
                                client learns only that it is unauthenticated
    KeysNotConfigured           neither or both of WALLET_JWT_SECRET and WALLET_JWKS_URL
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import jwt
from jwt import PyJWK, PyJWKClient

from wallet.config import Settings
from wallet.domain.callers import Caller, id_problem

log = logging.getLogger("wallet.tokens")

# RFC 7518 3.2: an HS256 key has at least as many bits as the hash, 256.
MIN_SECRET_BYTES = 32
# An unknown `kid` fetches the key set again, but no more often than this: tokens naming junk
# kids must not make us hammer the identity provider. A rotated key waits at most this long.
REFRESH_AT_MOST_EVERY = 5.0
# Keys are fetched again when this old, at the next token, so a key the provider withdrew stops
# working; should that fetch fail, the keys held go on serving.
KEYS_MAX_AGE = 600.0
FETCH_TIMEOUT = 2.0


class Unauthenticated(Exception):
    """A request whose caller we cannot name. `reason` says why, for the log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeysNotConfigured(ValueError):
    """Tokens cannot be verified (or signed) as configured; the message names the variables."""


class Keys(Protocol):
    """Where the keys that verify tokens come from."""

    algorithms: frozenset[str]

    async def key_for(self, header: Mapping[str, Any]) -> PyJWK | bytes:
        """The key that verifies a token with this (unverified) header, or Unauthenticated."""
        ...


class SharedSecret:
    """One secret shared with whoever signs the tokens (`wallet token`): HS256 only."""

    algorithms = frozenset({"HS256"})

    def __init__(self, secret: str) -> None:
        self._secret = secret_bytes(secret)

    async def key_for(self, header: Mapping[str, Any]) -> bytes:
        return self._secret


class KeySetFromUrl:
    """An identity provider's public keys, from its JWKS URL: RS256 and ES256 only.

    Fetched when first needed, then again when a token names a `kid` not held, or when they
    are KEYS_MAX_AGE old; never more than once per REFRESH_AT_MOST_EVERY, and one fetch at a
    time (requests arriving meanwhile wait for it). The fetch is blocking HTTP (PyJWT's
    client, its own cache off), so it runs in a thread, off the event loop.
    """

    algorithms = frozenset({"RS256", "ES256"})

    def __init__(
        self,
        url: str,
        *,
        refresh_at_most_every: float = REFRESH_AT_MOST_EVERY,
        max_age: float = KEYS_MAX_AGE,
        timeout: float = FETCH_TIMEOUT,
    ) -> None:
        try:
            self._client = PyJWKClient(url, cache_jwk_set=False, timeout=timeout)
        except jwt.PyJWKClientError as error:
            raise KeysNotConfigured(f"WALLET_JWKS_URL: {error}") from None
        self.url = url
        self._refresh_at_most_every = refresh_at_most_every
        self._max_age = max_age
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None  # the last success
        self._tried_at: float | None = None  # the last attempt, success or not
        self._failure: str | None = None  # why the last attempt failed, if it did
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key_for(self, header: Mapping[str, Any]) -> PyJWK:
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("the token names no key (kid)")
        key = self._keys.get(kid)
        if key is None or self._stale():
            await self._refresh()
            key = self._keys.get(kid)
        if key is None:
            if self._failure is not None:
                raise Unauthenticated(f"signing keys unavailable: {self._failure}")
            raise Unauthenticated(f"no key {kid!r} in the identity provider's key set")
        return key

    def _stale(self) -> bool:
        return self._fetched_at is None or time.monotonic() - self._fetched_at > self._max_age

    async def _refresh(self) -> None:
        async with self._lock:
            now = time.monotonic()
            if self._tried_at is not None and now - self._tried_at < self._refresh_at_most_every:
                return  # fetched (or tried) a moment ago, perhaps by the request we waited on
            self._tried_at = now
            self.fetches += 1
            try:
                keys = await asyncio.to_thread(self._client.get_signing_keys, True)
            except (jwt.PyJWKClientError, jwt.PyJWKSetError, ValueError, OSError) as error:
                self._failure = str(error) or type(error).__name__
                # One line, no traceback: an outage of the provider is not a bug of ours.
                log.warning("could not fetch the JWKS at %s: %s", self.url, self._failure)
                return
            self._failure = None
            self._fetched_at = time.monotonic()
            self._keys = {
                key.key_id: key
                for key in keys
                if key.key_id is not None and key.algorithm_name in self.algorithms
            }


# How many verified tokens a process remembers, and for how long at most.
MAX_REMEMBERED_TOKENS = 10_000
REMEMBER_SECONDS = 60.0


class TokenVerifier:
    """Turns an `Authorization` header value into the Caller its bearer token names.

    One verification, keys held, on the development machine (2 cores, best of 5 x 5,000):
    HS256 48 us, RS256 (2048-bit) 85 us, ES256 (P-256) 91 us. That was more than the rest of
    a `{ __typename }` request, and a client sends the same token with every request: so a
    verified token is remembered, by its whole text (its signature included, so no other
    text finds it), until its `exp` but at most REMEMBER_SECONDS, which bounds how long a
    key withdrawn from the JWKS goes on being honoured.
    """

    def __init__(
        self,
        keys: Keys,
        *,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: float,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        # Verified tokens, oldest first, with the moment each stops being trusted.
        self._verified: dict[str, tuple[Caller, float]] = {}

    async def caller(self, authorization: str | None) -> Caller:
        token = bearer_token(authorization)
        remembered = self._verified.get(token)
        if remembered is not None:
            caller, until = remembered
            if time.time() < until:
                return caller
            del self._verified[token]
        caller, expires = await self._verify(token)
        if len(self._verified) >= MAX_REMEMBERED_TOKENS:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = caller, min(expires, time.time() + REMEMBER_SECONDS)
        return caller

    async def _verify(self, token: str) -> tuple[Caller, float]:
        """The caller the token names, and its `exp`; Unauthenticated when it names none."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise Unauthenticated(f"malformed token: {error}") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._keys.algorithms:
            raise Unauthenticated(f"algorithm {algorithm!r} not accepted")
        key = await self._keys.key_for(header)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={
                    "require": ["exp", "sub"],
                    "verify_iss": self._issuer is not None,
                    "verify_aud": self._audience is not None,
                    # A short key is refused, not warned about on every request.
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.PyJWTError as error:
            raise Unauthenticated(f"{type(error).__name__}: {error}") from None
        subject = claims["sub"]
        if not isinstance(subject, str):
            raise Unauthenticated("the token's sub is no string")
        if (problem := id_problem(subject)) is not None:
            raise Unauthenticated(f"the token's sub cannot name a caller: {problem}")
        return Caller(id=subject, scopes=scopes_of(claims)), float(claims["exp"])


def bearer_token(authorization: str | None) -> str:
    """The token of `Bearer <token>` (the scheme's case does not matter, RFC 9110 11.1)."""
    if not authorization:
        raise Unauthenticated("no Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer":
        raise Unauthenticated("the Authorization header is not a Bearer token")
    if not token or any(c.isspace() for c in token):
        raise Unauthenticated("the Authorization header holds no single token")
    return token


def scopes_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """`scope` (else `scp`): a space-separated string (RFC 8693) or a list of strings, as some
    identity providers send; anything else is refused rather than read as no scopes."""
    value = claims.get("scope", claims.get("scp"))
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return frozenset(s for item in value for s in item.split())
    raise Unauthenticated("the token's scope is neither a string nor a list of strings")


def secret_bytes(secret: str) -> bytes:
    encoded = secret.encode()
    if len(encoded) < MIN_SECRET_BYTES:
        raise KeysNotConfigured(f"WALLET_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes")
    return encoded


def verifier_for(settings: Settings) -> TokenVerifier:
    """The verifier the settings describe; KeysNotConfigured unless exactly one key source."""
    secret = settings.jwt_secret
    if secret is not None and settings.jwks_url is not None:
        raise KeysNotConfigured("set one of WALLET_JWT_SECRET and WALLET_JWKS_URL, not both")
    keys: Keys
    if settings.jwks_url is not None:
        keys = KeySetFromUrl(settings.jwks_url)
    elif secret is not None:
        keys = SharedSecret(secret.get_secret_value())
    else:
        raise KeysNotConfigured("set WALLET_JWT_SECRET or WALLET_JWKS_URL to verify tokens")
    return TokenVerifier(
        keys,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway=settings.jwt_leeway_seconds,
    )


def issue_token(
    settings: Settings,
    subject: str,
    scopes: Iterable[str] = (),
    *,
    ttl: float = 3600.0,
) -> str:
    """An HS256 token signed with WALLET_JWT_SECRET, naming the configured issuer and
    audience: what `wallet token` prints, for development, tests and scripts."""
    if settings.jwt_secret is None:
        raise KeysNotConfigured("WALLET_JWT_SECRET is not set: it signs the token")
    if (problem := id_problem(subject)) is not None:
        raise ValueError(f"the subject cannot name a caller: {problem}")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": subject, "iat": now, "exp": now + int(ttl)}
    if scope := " ".join(scopes):
        claims["scope"] = scope
    if settings.jwt_issuer is not None:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience is not None:
        claims["aud"] = settings.jwt_audience
    key = secret_bytes(settings.jwt_secret.get_secret_value())
    return jwt.encode(claims, key, algorithm="HS256")
