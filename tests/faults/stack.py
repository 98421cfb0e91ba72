"""The real service for one scenario: `wallet migrate`, `serve` and `worker`, run through the CLI
against the suite's own PostgreSQL and Redis, on a database of the scenario's own."""

from __future__ import annotations

import os
import signal
import subprocess

from tests.faults.servers import PostgresServer, RedisServer
from tests.processes import WALLET, Process, free_port, start_api, start_worker


class Stack:
    def __init__(self, postgres: PostgresServer, redis: RedisServer, scenario: str) -> None:
        self.postgres = postgres
        self.redis = redis
        self.database_url = postgres.url(f"faults_{scenario}")
        self.env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": redis.url,
            "WALLET_REDIS_PREFIX": f"faults-{scenario}",
            # Recovery within a test's patience: stalled transactions are queued again after
            # 2 s, a dead worker's jobs handed on after 3 s, a stopping worker waits 5 s.
            "WALLET_SWEEP_AFTER_SECONDS": "2",
            "WALLET_REDELIVER_AFTER_MS": "3000",
            "WALLET_SHUTDOWN_GRACE_SECONDS": "5",
        }
        self.port = free_port()
        self.api: Process | None = None
        self.worker: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    def start(self, *, worker: bool = True) -> None:
        for server in (self.postgres, self.redis):
            if not server.ready():
                server.start()
        done = subprocess.run(
            [WALLET, "migrate"], env=self.env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        self.api = start_api(self.env, port=self.port)
        if worker:
            self.start_worker()

    def start_worker(self) -> None:
        self.worker = start_worker(self.env, concurrency=32)

    def stop(self) -> None:
        for process in (self.api, self.worker):
            if process is not None:
                process.stop(signal.SIGKILL)
