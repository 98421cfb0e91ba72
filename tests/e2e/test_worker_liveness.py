"""A worker's heartbeat file, which a container's liveness check reads."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from tests.processes import WALLET, start, wait_until
from wallet.worker import HEARTBEAT_SECONDS

pytestmark = pytest.mark.slow


def _check(heartbeat: Path, max_age: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WALLET, "check-heartbeat", str(heartbeat), "--max-age", str(max_age)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_running_worker_is_alive_and_a_frozen_one_is_found_dead(
    env: dict[str, str], tmp_path: Path
) -> None:
    heartbeat = tmp_path / "worker.heartbeat"
    # Longer than the time between two beats: only a worker that stopped beating is too old.
    max_age = HEARTBEAT_SECONDS + 2
    assert _check(heartbeat, max_age).returncode == 1  # no worker yet
    worker = start(
        [WALLET, "worker", "--heartbeat", str(heartbeat)],
        env,
        "wallet worker",
        lambda process: "worker listening" in process.this_run(),
    )
    try:
        wait_until(heartbeat.exists, 30, "the first heartbeat")
        assert _check(heartbeat, max_age).returncode == 0
        worker.popen.send_signal(signal.SIGSTOP)  # a hung worker: its loop no longer turns
        try:
            # Each look starts a process: every half second is often enough.
            wait_until(
                lambda: _check(heartbeat, max_age).returncode == 1, 30, "a stale beat", every=0.5
            )
        finally:
            worker.popen.send_signal(signal.SIGCONT)
    finally:
        worker.stop()
    stale = _check(heartbeat, 0)
    assert stale.returncode == 1
    assert "s old" in stale.stderr
