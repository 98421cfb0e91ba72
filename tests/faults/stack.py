"""The real service for one scenario: `wallet migrate`, `serve` and `worker`, run through the CLI
against the suite's own PostgreSQL and Redis, on a database of the scenario's own."""

from __future__ import annotations

import os
import signal
import subprocess

from tests import tokens
from tests.faults.servers import PostgresServer, RedisServer
from tests.processes import WALLET, Process, free_port, start_api, start_worker

# Workers share the queue as in a deployment: a job delivered again, or queued again by a
# sweeper, may then be taken by two of them at once, which the settlement's locks must handle.
WORKERS = 2


class Stack:
    def __init__(self, postgres: PostgresServer, redis: RedisServer, scenario: str) -> None:
        self.postgres = postgres
        self.redis = redis
        self.database_url = postgres.url(f"faults_{scenario}")
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in tokens.FOREIGN_VARIABLES},
            **tokens.environment(),
            "DATABASE_URL": self.database_url,
            "REDIS_URL": redis.url,
            "WALLET_REDIS_PREFIX": f"faults-{scenario}",
            # Recovery within a test's patience: stalled transactions are queued again after
            # 2 s, a job held a second by a worker that does not finish it is handed to
            # another, a stopping worker waits 5 s for its running jobs.
            "WALLET_SWEEP_AFTER_SECONDS": "2",
            "WALLET_REDELIVER_AFTER_MS": "1000",
            "WALLET_SHUTDOWN_GRACE_SECONDS": "5",
        }
        self.port = free_port()
        self.api: Process | None = None
        self.workers: list[Process] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    def start(self, *, workers: bool = True, api_log_level: str = "warning") -> None:
        for server in (self.postgres, self.redis):
            if not server.ready():
                server.start()
        done = subprocess.run(
            [WALLET, "migrate"], env=self.env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        self.api = start_api(self.env, port=self.port, log_level=api_log_level)
        if workers:
            self.start_workers(WORKERS)

    def start_workers(self, count: int, **settings: str) -> None:
        self.workers += [start_worker(self.env, concurrency=32, **settings) for _ in range(count)]

    def stop(self) -> None:
        for process in (self.api, *self.workers):
            if process is not None:
                process.stop(signal.SIGKILL)
