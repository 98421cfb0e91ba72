"""The benchmark itself runs: `python -m bench --quick` gives every figure, and sane ones.

It asserts that the figures exist and make sense, never that they are fast: speed is measured
by running the benchmark, not by a test on a shared machine.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
KEYS = (
    "pgbench_tps",
    "deposit_rps",
    "deposit_p50_ms",
    "deposit_p99_ms",
    "transfer_tps",
    "transfer_hot_tps",
    "transfer_ratio",
    "hot_ratio",
    "read_ratio",
    # The service layer straight on PostgreSQL, the ceiling under HTTP and GraphQL.
    "service_deposit_ops",
    "service_submit_ops",
    "service_settle_ops",
)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], Path]:
    missing = [tool for tool in ("wrk", "pgbench") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} missing: apt-get install -y wrk postgresql-client")
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,  # a hang fails the test; the run's speed is not asserted
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return summary, out


def test_the_last_line_holds_every_figure_as_a_positive_finite_number(
    quick_run: tuple[dict[str, object], Path],
) -> None:
    summary, _ = quick_run
    for key in KEYS:
        value = summary.get(key)
        assert isinstance(value, int | float), f"{key} = {value!r}"
        assert math.isfinite(value), f"{key} = {value!r}"
        assert value > 0, f"{key} = {value!r}"


def test_the_figures_agree_with_each_other(quick_run: tuple[dict[str, object], Path]) -> None:
    summary, _ = quick_run
    figures = {key: float(summary[key]) for key in KEYS}  # type: ignore[arg-type]
    assert figures["deposit_p50_ms"] <= figures["deposit_p99_ms"]
    assert figures["transfer_ratio"] == pytest.approx(
        figures["transfer_tps"] / figures["pgbench_tps"], rel=0.01
    )
    assert figures["hot_ratio"] == pytest.approx(
        figures["transfer_hot_tps"] / figures["transfer_tps"], rel=0.01
    )


def test_the_load_left_the_ledger_consistent_and_no_request_failed(
    quick_run: tuple[dict[str, object], Path],
) -> None:
    summary, _ = quick_run
    assert summary["ledger_consistent"] is True
    assert summary["problems"] == 0


def test_the_results_file_and_the_latency_chart_are_written(
    quick_run: tuple[dict[str, object], Path],
) -> None:
    summary, out = quick_run
    results = json.loads((out / "results.json").read_text())
    for key in KEYS:
        assert results[key] == pytest.approx(summary[key], rel=1e-3)
    assert results["deposit"]["good"] > 0
    assert results["transfer"]["completed"] > 0
    assert results["transfer_hot"]["completed"] > 0
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pytest.skip("matplotlib missing (pip install -e '.[bench]'): no chart to check")
    chart = out / "latency.png"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
