"""`wallet dev`: the whole service from an empty directory, and nothing left running after it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from pydantic import SecretStr

from tests import tokens
from tests.client import Api
from tests.processes import WALLET, free_port, wait_until
from wallet.config import Settings
from wallet.web.tokens import verifier_for

pytestmark = pytest.mark.slow


@dataclass
class DevRun:
    popen: subprocess.Popen[bytes]
    url: str
    log: Path
    startup_seconds: float

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    @property
    def token(self) -> str:
        """The developer's token it printed (after `#token=` in its GraphiQL address)."""
        said = self.output()
        return said[said.rindex("#token=") :].split()[0].removeprefix("#token=")

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.popen.pid).children(recursive=True)

    def stop(self, *, ctrl_c: bool = False) -> list[psutil.Process]:
        """Stop it as a user would; returns what it had running, all of which must be gone."""
        running = self.descendants()
        if ctrl_c:
            # A terminal's Ctrl-C: SIGINT to the foreground process group.
            os.killpg(self.popen.pid, signal.SIGINT)
        else:
            self.popen.send_signal(signal.SIGTERM)
        self.popen.wait(60)
        return running


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory for a project, outside pytest's base temporary directory: pytest sessions
    running at the same time (other checkouts) set that back to 0700, and the `pgserver`
    account that runs PostgreSQL under root then cannot reach the data in it."""
    directory = Path(tempfile.mkdtemp(prefix="wallet-dev-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def _environment(**overrides: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DATABASE_URL", "REDIS_URL", "WALLET_DATABASE_URL", "WALLET_REDIS_URL")
        and name not in ("WALLET_JWT_SECRET", *tokens.FOREIGN_VARIABLES)
    }
    # No token settings: `wallet dev` makes its own secret, and the tests use the token it
    # prints, as its user does.
    return {**env, **overrides}


@contextmanager
def wallet_dev(directory: Path, env: dict[str, str], log: Path) -> Iterator[DevRun]:
    port = free_port()
    started = time.monotonic()
    with log.open("ab") as output:
        popen = subprocess.Popen(
            [WALLET, "dev", "--port", str(port)],
            cwd=directory,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            # Its own process group, as a shell gives a foreground command.
            start_new_session=True,
        )
    run = DevRun(popen, f"http://127.0.0.1:{port}/graphql", log, 0.0)

    def answers() -> bool:
        if popen.poll() is not None:
            raise RuntimeError(f"wallet dev exited with {popen.returncode}:\n{run.output()}")
        # Ready when it says so (a user waits for that line), and then it must answer.
        if f"GraphiQL: {run.url}" not in run.output():
            return False
        answer = httpx.post(
            run.url, json={"query": "{ __typename }"}, headers=tokens.header(run.token)
        )
        return answer.status_code == 200

    try:
        wait_until(answers, 60, "wallet dev")
        run.startup_seconds = time.monotonic() - started
        yield run
    finally:
        if popen.poll() is None:  # the test failed before stopping it
            for process in [*run.descendants(), psutil.Process(popen.pid)]:
                process.kill()
            popen.wait()


def assert_nothing_left(run: DevRun, running: list[psutil.Process], directory: Path) -> None:
    assert run.popen.returncode == 0, run.output()
    # is_running() compares start times too, so a reused pid is not mistaken for a survivor.
    _gone, alive = psutil.wait_procs(running, timeout=5)
    assert alive == [], f"still running: {alive}\n{run.output()}"
    with pytest.raises(ProcessLookupError):
        os.killpg(run.popen.pid, 0)
    for process in psutil.process_iter(["cmdline"]):
        assert str(directory) not in " ".join(process.info["cmdline"] or []), process


async def test_wallet_dev_in_an_empty_directory_settles_a_transfer_and_sigterm_leaves_nothing(
    tmp_path: Path, workdir: Path
) -> None:
    directory = workdir / "empty"
    directory.mkdir()
    with wallet_dev(directory, _environment(), tmp_path / "dev.log") as run:
        assert run.startup_seconds < 60
        names = {process.name() for process in run.descendants()}
        assert {"postgres", "redis-server"} <= names, names

        async with httpx.AsyncClient(timeout=10) as client:
            api = Api(client, run.url, run.token)
            sender = await api.new_wallet()
            receiver = await api.new_wallet()
            deposit = await api.deposit(sender, "100.00", "d-1", settled=False)
            assert deposit["transaction"]["status"] == "COMPLETED"
            transfer = await api.transfer(sender, receiver, "40.00")
            # Settled by the worker that `wallet dev` started, over the embedded Redis.
            assert transfer["transaction"]["status"] == "COMPLETED"
            assert await api.balance(receiver) == "40.00"

        running = run.stop()
    assert_nothing_left(run, running, directory)
    assert (directory / ".wallet" / "postgres" / "PG_VERSION").exists()
    print(f"wallet dev answered GraphQL {run.startup_seconds:.1f} s after it started")


def _clients(run: DevRun) -> list[str]:
    """The ready-to-paste client lines `wallet dev` printed for its embedded servers."""
    return re.findall(r"(?:PostgreSQL|Redis) client: (.+)", run.output())


async def test_wallet_dev_keeps_its_data_and_ports_between_runs_and_stops_on_ctrl_c(
    tmp_path: Path, workdir: Path
) -> None:
    directory = workdir / "project"
    directory.mkdir()
    with wallet_dev(directory, _environment(), tmp_path / "dev1.log") as run:
        async with httpx.AsyncClient(timeout=10) as client:
            wallet = await Api(client, run.url, run.token).new_wallet("12.34")
        first = _clients(run)
        running = run.stop(ctrl_c=True)
    assert_nothing_left(run, running, directory)
    psql, redis_cli = first
    assert re.search(r"psql -h 127\.0\.0\.1 -p \d+ -U postgres wallet$", psql), psql
    assert re.search(r"redis-cli -h 127\.0\.0\.1 -p \d+$", redis_cli), redis_cli
    assert set(json.loads((directory / ".wallet" / "ports.json").read_text())) == {
        "postgres",
        "redis",
    }

    with wallet_dev(directory, _environment(), tmp_path / "dev2.log") as run:
        async with httpx.AsyncClient(timeout=10) as client:
            assert await Api(client, run.url, run.token).balance(wallet) == "12.34"
        # Yesterday's psql line still works.
        answer = subprocess.run(
            [*psql.split(), "-tAc", "SELECT count(*) FROM wallets"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert answer.stdout.strip() == "1", answer.stderr
        assert _clients(run) == first
        running = run.stop()
    assert_nothing_left(run, running, directory)


def _with_given_servers(service_env: dict[str, str]) -> dict[str, str]:
    """`wallet dev`'s environment naming the run's PostgreSQL and Redis (a prefix of its own)."""
    return _environment(
        DATABASE_URL=service_env["DATABASE_URL"],
        REDIS_URL=service_env["REDIS_URL"],
        WALLET_REDIS_PREFIX=f"{service_env['WALLET_REDIS_PREFIX']}-dev-{uuid.uuid4().hex[:6]}",
    )


async def test_wallet_dev_uses_the_database_and_redis_given_in_its_environment(
    tmp_path: Path, service_env: dict[str, str]
) -> None:
    env = _with_given_servers(service_env)
    with wallet_dev(tmp_path, env, tmp_path / "dev.log") as run:
        names = {process.name() for process in run.descendants()}
        assert not names & {"postgres", "redis-server"}, names
        async with httpx.AsyncClient(timeout=10) as client:
            api = Api(client, run.url, run.token)
            sender = await api.new_wallet("5.00")
            receiver = await api.new_wallet()
            transfer = await api.transfer(sender, receiver, "5.00")
            assert transfer["transaction"]["status"] == "COMPLETED"
        running = run.stop()
    assert_nothing_left(run, running, tmp_path)
    # No data of its own: only the secret its developer's tokens are signed with.
    assert [p.name for p in (tmp_path / ".wallet").iterdir()] == ["jwt-secret"]


async def test_wallet_dev_keeps_its_token_secret_and_prints_a_token_signed_with_it(
    tmp_path: Path, service_env: dict[str, str]
) -> None:
    env = _with_given_servers(service_env)
    printed = []
    for _ in range(2):  # a second run signs with the secret the first one kept
        with wallet_dev(tmp_path, env, tmp_path / "dev.log") as run:
            said = (tmp_path / "dev.log").read_text()
            printed.append(said[said.index("#token=") :].split()[0].removeprefix("#token="))
            run.stop()
    secret = (tmp_path / ".wallet" / "jwt-secret").read_text()
    assert (tmp_path / ".wallet" / "jwt-secret").stat().st_mode & 0o077 == 0
    verifier = verifier_for(Settings(jwt_secret=SecretStr(secret)))
    for token in printed:
        caller = await verifier.caller(f"Bearer {token}")
        assert caller.id == "developer"
        assert caller.is_admin
        assert caller.may_deposit
