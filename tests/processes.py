"""Real processes for end-to-end tests: `wallet serve`, `wallet worker`, a private redis-server."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from tests import tokens
from wallet.dev import free_port, start_redis

WALLET = str(Path(sys.executable).with_name("wallet"))


def wait_until(check: object, timeout: float, what: str, every: float = 0.1) -> None:
    """Call `check` every `every` seconds until it is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(every)
    raise TimeoutError(f"{what} not ready after {timeout} s")


@dataclass
class Process:
    popen: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]
    url: str = ""
    # Whether it is ready to serve; start() and restart() wait for it.
    ready: Callable[[Process], bool] = field(default=lambda _process: True)
    name: str = "process"
    # Where this run's output starts in the log, which restarts append to.
    log_offset: int = 0

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> float:
        """Send `sig` and wait; returns the seconds it took to exit."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        return self.wait_for_exit(timeout)

    def wait_for_exit(self, timeout: float = 10.0) -> float:
        """Wait for it to exit (killed if it takes longer than `timeout`); the seconds it took."""
        started = time.monotonic()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise
        return time.monotonic() - started

    def restart(self, timeout: float = 30.0) -> None:
        """Start the same command again, with the same environment and log (after stop())."""
        assert self.popen.poll() is not None, "stop it first"
        self.log_offset = self.log.stat().st_size
        with self.log.open("ab") as log:
            self.popen = subprocess.Popen(
                self.popen.args,  # type: ignore[arg-type]
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.output()}")
            return self.ready(self)

        wait_until(ready, timeout, self.name)

    def output(self) -> str:
        """Everything it has logged, over all its runs."""
        return self.log.read_text(errors="replace")

    def this_run(self) -> str:
        """What it has logged since it was last started."""
        with self.log.open("rb") as log:
            log.seek(self.log_offset)
            return log.read().decode(errors="replace")


def start(
    args: list[str], env: dict[str, str], name: str, ready: Callable[[Process], bool], url: str = ""
) -> Process:
    """Start a process, its output in a log file of its own, and wait until it is ready."""
    handle, path = tempfile.mkstemp(prefix=f"{name.replace(' ', '-')}-", suffix=".log")
    try:
        popen = subprocess.Popen(
            args, env=env, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    finally:
        os.close(handle)  # the child has its own copy
    process = Process(popen=popen, log=Path(path), env=env, url=url, ready=ready, name=name)
    try:
        process.wait_ready()
    except BaseException:
        process.stop(signal.SIGKILL)
        raise
    return process


def _answers(process: Process) -> bool:
    answer = httpx.post(process.url, json={"query": "{ __typename }"}, headers=tokens.header())
    return answer.status_code == 200


def start_api(
    env: dict[str, str],
    workers: int = 1,
    port: int | None = None,
    log_level: str = "warning",
    **settings: str,
) -> Process:
    """`wallet serve` on a free port (or `port`), answering GraphQL."""
    port = port or free_port()
    # Tests hammer one server from one address: limits are off unless a test sets them.
    defaults = {"WALLET_RATE_LIMITS_ENABLED": "false"}
    return start(
        [WALLET, "serve", "--port", str(port), "--log-level", log_level, "--workers", str(workers)],
        {**defaults, **env, **settings},
        "wallet serve",
        _answers,
        f"http://127.0.0.1:{port}/graphql",
    )


def start_worker(env: dict[str, str], concurrency: int = 8, **settings: str) -> Process:
    """`wallet worker`, once it listens on the queue."""
    return start(
        [WALLET, "worker", "--concurrency", str(concurrency)],
        {**env, **settings},
        "wallet worker",
        lambda process: "worker listening" in process.this_run(),
    )


@contextmanager
def api_server(env: dict[str, str], workers: int = 1, **settings: str) -> Iterator[Process]:
    process = start_api(env, workers, **settings)
    try:
        yield process
    finally:
        process.stop()


@contextmanager
def worker(env: dict[str, str], concurrency: int = 8, **settings: str) -> Iterator[Process]:
    process = start_worker(env, concurrency, **settings)
    try:
        yield process
    finally:
        process.stop()


@contextmanager
def private_redis() -> Iterator[Process]:
    """A redis-server of the test's own, which the test may stop and start at will: `wallet
    dev`'s embedded one, keeping nothing on disk."""
    directory = Path(tempfile.mkdtemp(prefix="redis-"))
    server = start_redis(directory, settings={"appendonly": "no"})
    process = Process(
        popen=server.child.popen,
        log=server.log,
        env=dict(os.environ),
        url=server.url,
        ready=lambda _process: server.ready(),
        name="redis-server",
    )
    try:
        process.wait_ready()
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
