"""A PostgreSQL of the test's own (the pgserver wheel's, as `wallet dev` runs it), which the
test may stop and start again on the same port; the shared one is never touched.

Its data lives in a directory of its own under the system's temporary directory, not under
pytest's: when run as root the server runs as another user, which needs to pass through
every parent directory, and each pytest session that starts sets its base directory back to
0700 (two runs at once took the data away from a running server)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from wallet.dev import Started, start_postgres


@dataclass
class PrivatePostgres:
    started: Started
    data: Path

    @property
    def url(self) -> str:
        return self.started.url

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.started.ready():
            exited = self.started.child.popen.poll()
            if exited is not None or time.monotonic() > deadline:
                log = self.started.log.read_text(errors="replace")[-3000:]
                raise AssertionError(f"the private PostgreSQL did not start ({exited}):\n{log}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.started.child.send_stop()
        self.started.child.wait()

    def start(self) -> None:
        """Start it again with the same command: same data, same port. Tried three times:
        on a busy machine the last server's processes may still be leaving."""
        for attempt in range(3):
            self._spawn_again()
            try:
                self.wait_ready()
                return
            except AssertionError:
                if attempt == 2 or self.started.child.popen.poll() is None:
                    raise
                time.sleep(1)

    def _spawn_again(self) -> None:
        pgdata = self.data / "postgres"
        owner = pgdata.stat()
        as_owner = os.geteuid() == 0
        with self.started.log.open("ab") as log:
            self.started.child.popen = subprocess.Popen(
                self.started.child.popen.args,
                cwd=pgdata,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,
                user=owner.st_uid if as_owner else None,
                group=owner.st_gid if as_owner else None,
                extra_groups=[] if as_owner else None,
            )


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    data = Path(tempfile.mkdtemp(prefix="wallet-test-postgres-"))
    try:
        server = PrivatePostgres(start_postgres(data), data)
        try:
            server.wait_ready()
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(data, ignore_errors=True)
