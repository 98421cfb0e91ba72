"""The fault suite's servers, one of each for the whole suite, and its report.

Each scenario runs on a database of its own and a Redis prefix of its own, on a PostgreSQL and
a Redis that only this suite uses, since its scenarios kill them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.faults.servers import PostgresServer, RedisServer


@dataclass(frozen=True)
class ReportLine:
    scenario: str
    requests: int
    attempts: int
    failed_attempts: int
    resends: int
    # Seconds from the fault's end to the first answered request after it.
    recovery_seconds: float
    slowest_settlement_seconds: float
    # Where the fault fell in the load, in seconds from its start.
    fault_began: float
    fault_ended: float
    load_ended: float

    def __str__(self) -> str:
        return (
            f"{self.scenario:<34} {self.requests:>5} requests {self.attempts:>5} attempts "
            f"{self.failed_attempts:>4} failed {self.resends:>4} re-sent | "
            f"recovered in {self.recovery_seconds:5.2f} s, slowest settlement "
            f"{self.slowest_settlement_seconds:5.2f} s | fault at "
            f"{self.fault_began:.1f}-{self.fault_ended:.1f} s of {self.load_ended:.1f} s | "
            f"invariants held"
        )


REPORT: list[ReportLine] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORT:
        terminalreporter.section("faults")
        for line in REPORT:
            terminalreporter.write_line(str(line))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.close()
