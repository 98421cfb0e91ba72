"""bench/audit_ledger.py writes a ledger that `wallet audit` finds clean, and times it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from wallet.persistence.database import drop_database

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def bench_database(database_url: str) -> AsyncIterator[str]:
    name = f"{make_url(database_url).database}_audit_bench"
    url = make_url(database_url).set(database=name).render_as_string(hide_password=False)
    yield url
    await drop_database(url)


def test_the_generated_ledger_passes_every_check_of_the_audit(bench_database: str) -> None:
    command = [sys.executable, "-m", "bench.audit_ledger", "--database-url", bench_database]
    sizes = ["--wallets", "20", "--transfers", "400", "--withdrawals", "40"]

    done = subprocess.run(
        command + sizes, cwd=ROOT, capture_output=True, text=True, timeout=100, check=False
    )

    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    # 20 opening deposits, 2 entries a transfer, 36 of the 40 withdrawals COMPLETED.
    assert "filled: 856 entries" in done.stdout
    assert "wallet audit: no discrepancies" in done.stdout
    # One PENDING withdrawal for each wallet, recent: counted, and none too old.
    assert "20 PENDING transactions" in done.stdout
