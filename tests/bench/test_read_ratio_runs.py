"""bench/read_ratio.py runs end to end and prints its figures; their values are not asserted."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_the_read_ratio_benchmark_prints_both_rates_and_their_ratio() -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk missing: apt-get install -y wrk")
    done = subprocess.run(
        [sys.executable, "-m", "bench.read_ratio", "--seconds", "1", "--rounds", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    lines = done.stdout.splitlines()
    assert sum(line.startswith("round 1 ") for line in lines) == 2, done.stdout
    summary = re.search(
        r"median \{ wallet \{ balance \} \} (\d+) req/s, \{ __typename \} (\d+) req/s, "
        r"ratio (\d+\.\d\d)",
        done.stdout,
    )
    assert summary, done.stdout
    wallet, typename, ratio = int(summary[1]), int(summary[2]), float(summary[3])
    assert wallet > 0
    assert typename > 0
    assert ratio == pytest.approx(wallet / typename, abs=0.01)
