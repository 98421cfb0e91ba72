"""`python -m bench` runs end to end against a real stack, briefly, and measures something.

The phases over HTTP run for a second each: the figures are asserted positive and the ledger
sound, never fast. Speed is measured by running the benchmark, not by a test on a shared
machine. (pgbench and the in-process service layer are left to the benchmark itself: they
need no stack of ours to go wrong in.)
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bench.report import KEYS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CONNECTIONS = 16
MEASURED = (
    "deposit_rps",
    "deposit_p50_ms",
    "deposit_p99_ms",
    "transfer_tps",
    "transfer_hot_tps",
    "hot_ratio",
    "read_wallet_rps",
    "read_typename_rps",
    "read_ratio",
    "batch_tps",
    "atomic_batch_tps",
    "mutation_overhead",
    "completion_p99_ms",
    "page_ratio",
    "db_capacity_tps",
    "db_capacity_single_tps",
)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    if shutil.which("wrk") is None:
        pytest.skip("wrk missing: apt-get install -y wrk")
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [
            *(sys.executable, "-m", "bench", "--only", "deposits,transfers,batches,reads,pages"),
            *("--duration", "1", "--apis", "1", "--wallets", "20", "--transfers", "200"),
            *("--connections", str(CONNECTIONS), "--out", str(out)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,  # a hang fails the test; the run's speed is not asserted
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return summary, done.stdout, out


def test_every_measured_figure_is_a_positive_finite_number(
    short_run: tuple[dict[str, Any], str, Path],
) -> None:
    summary, _, _ = short_run
    for key in MEASURED:
        value = summary.get(key)
        assert isinstance(value, int | float), f"{key} = {value!r}"
        assert math.isfinite(value), f"{key} = {value!r}"
        assert value > 0, f"{key} = {value!r}"


def test_a_phase_that_did_not_run_is_null_not_zero(
    short_run: tuple[dict[str, Any], str, Path],
) -> None:
    summary, _, _ = short_run
    assert summary["pgbench_tps"] is None
    assert summary["transfer_ratio"] is None  # its denominator is pgbench's
    assert summary["batch_ratio"] is None
    assert summary["db_cost_ratio"] is None


def test_the_load_left_the_ledger_consistent_and_no_request_failed(
    short_run: tuple[dict[str, Any], str, Path],
) -> None:
    summary, _, _ = short_run
    assert summary["ledger_consistent"] is True
    assert summary["problems"] == 0


def test_the_table_names_every_key_figure(short_run: tuple[dict[str, Any], str, Path]) -> None:
    _, stdout, _ = short_run
    lines = stdout.splitlines()
    for key in KEYS:
        assert any(line.startswith(key + " ") for line in lines), f"{key} not in\n{stdout}"


def test_the_results_file_holds_what_each_phase_counted(
    short_run: tuple[dict[str, Any], str, Path],
) -> None:
    _, _, out = short_run
    results = json.loads((out / "results.json").read_text())
    assert results["deposit"]["good"] > 0
    # Every deposit answered was recorded once; those still in flight (at most one per
    # connection) when wrk stopped counting may be recorded too.
    good, recorded = results["deposit"]["good"], results["deposit"]["recorded"]
    assert good <= recorded <= good + CONNECTIONS
    assert results["transfer"]["completed"] > 0
    assert results["transfer"]["pending"] == 0
    assert results["transfer_hot"]["completed"] > 0
    assert results["read_wallet"]["good"] > 0
    for batch in ("batch", "atomic_batch"):
        assert results[batch]["completed"] > 0
        assert results[batch]["failed"] == 0
        assert results[batch]["pending"] == 0
    assert results["page"]["good"] > 0
