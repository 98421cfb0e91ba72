"""The fault suite's servers, one of each for the whole suite, and its report.

Each scenario runs on a database of its own and a Redis prefix of its own, on a PostgreSQL and
a Redis that only this suite uses, since its scenarios kill them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.report import REPORT
from tests.faults.servers import PostgresServer, RedisServer


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORT:
        terminalreporter.section("faults")
        for line in REPORT:
            terminalreporter.write_line(str(line))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server
