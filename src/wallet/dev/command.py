"""`wallet dev` itself: start the servers, migrate, start the API and a worker, wait, stop."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

import asyncpg
from pydantic import SecretStr
from sqlalchemy.exc import SQLAlchemyError

from wallet.config import Settings
from wallet.dev.children import Child, DevError, say, spawn
from wallet.dev.ports import accepts, stable_port
from wallet.dev.servers import Started, start_postgres, start_redis
from wallet.persistence.database import migrate
from wallet.web.tokens import issue_token

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Stopped(Exception):
    """Raised by the signal handler, so that start-up and waiting unwind into the clean-up."""


def _raise_stopped(signum: int, _frame: FrameType | None) -> None:
    raise _Stopped(signal.Signals(signum).name)


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


def _given(env: dict[str, str], name: str) -> str | None:
    return env.get(name) or env.get(f"WALLET_{name}")


# Who the developer is in the token `wallet dev` prints: both scopes, so every part of the
# API can be tried from GraphiQL.
DEVELOPER = "developer"
DEVELOPER_SCOPES = ("wallet:deposit", "wallet:admin")
DEVELOPER_TOKEN_TTL = 12 * 3600


def _developer_token(env: dict[str, str], data: Path) -> str | None:
    """Sign tokens with WALLET_JWT_SECRET when given, else with a secret kept under `data`;
    a token for the developer, or None when keys come from an identity provider's JWKS."""
    if env.get("WALLET_JWKS_URL"):
        return None
    if not env.get("WALLET_JWT_SECRET"):
        data.mkdir(exist_ok=True)
        path = data / "jwt-secret"
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(48))
        env["WALLET_JWT_SECRET"] = path.read_text().strip()
    settings = Settings(
        jwt_secret=SecretStr(env["WALLET_JWT_SECRET"]),
        jwt_issuer=env.get("WALLET_JWT_ISSUER") or None,
        jwt_audience=env.get("WALLET_JWT_AUDIENCE") or None,
    )
    return issue_token(settings, DEVELOPER, DEVELOPER_SCOPES, ttl=DEVELOPER_TOKEN_TTL)


def _stop(tiers: list[list[Child]]) -> None:
    """Stop the last started tier first; within a tier, all at once."""
    for tier in reversed(tiers):
        for child in tier:
            child.send_stop()
        for child in tier:
            child.wait()


def _start(port: int, data: Path, tiers: list[list[Child]]) -> list[Child]:
    began = time.monotonic()
    if accepts(port):
        raise DevError(f"port {port} is taken; choose another with --port")
    env = dict(os.environ)
    services: list[Started] = []
    tiers.append([])
    database_url = _given(env, "DATABASE_URL")
    if database_url is None:
        data.mkdir(exist_ok=True)
        services.append(start_postgres(data, stable_port(data, "postgres")))
        tiers[-1].append(services[-1].child)
        database_url = env["DATABASE_URL"] = services[-1].url
    if _given(env, "REDIS_URL") is None:
        data.mkdir(exist_ok=True)
        services.append(start_redis(data, stable_port(data, "redis")))
        tiers[-1].append(services[-1].child)
        env["REDIS_URL"] = services[-1].url
    for service in services:
        service.wait_ready(30)
        say(f"{service.child.name} at {service.url} (data in {data}/, log {service.log})")
        say(f"  {service.child.name} client: {service.client}")
    try:
        say(asyncio.run(migrate(database_url)).summary())
    except (OSError, asyncpg.PostgresError, SQLAlchemyError) as error:
        raise DevError(f"could not migrate {_redacted(database_url)}: {error}") from None

    token = _developer_token(env, data)
    wallet = [sys.executable, "-m", "wallet.cli"]
    api = spawn(
        "the API",
        [*wallet, "serve", "--port", str(port)],
        stop_signal=signal.SIGTERM,
        grace=15.0,
        env=env,
    )
    tiers.append([api])
    worker = spawn(
        "the worker", [*wallet, "worker"], stop_signal=signal.SIGTERM, grace=20.0, env=env
    )
    tiers[-1].append(worker)
    api.wait_for(lambda: accepts(port), 60, None)
    say(f"ready in {time.monotonic() - began:.1f} s")
    graphiql = f"http://127.0.0.1:{port}/graphql"
    if token is None:
        print(f"GraphiQL: {graphiql}  (Ctrl-C stops everything)", flush=True)
        say("tokens come from WALLET_JWKS_URL's identity provider")
    else:
        # After `#`: the fragment never reaches a server or its logs; GraphiQL's page reads
        # it into the Authorization header.
        print(f"GraphiQL: {graphiql}#token={token}  (Ctrl-C stops everything)", flush=True)
        print(f"token ({DEVELOPER}, {' '.join(DEVELOPER_SCOPES)}): {token}", flush=True)
    return [*tiers[0], api, worker]


def run(port: int = 8000, data: Path = Path(".wallet")) -> int:
    """Start everything, wait for a signal (or a child that exits), stop everything."""
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in _STOP_SIGNALS}
    tiers: list[list[Child]] = []
    try:
        children = _start(port, data, tiers)
        while True:
            for child in children:
                if child.exited():
                    raise DevError(f"{child.name} exited with {child.popen.returncode}")
            time.sleep(0.25)
    except _Stopped as stopped:
        say(f"{stopped}: stopping")
        return 0
    except DevError as error:
        say(f"{error}; stopping")
        return 1
    finally:
        for sig in _STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        _stop(tiers)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
