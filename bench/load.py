"""Load from wrk: one run of bench/graphql.lua in a given mode, its figures parsed.

wrk is C with an event loop per thread; the Lua script builds each request (a fresh
clientTransactionId, a random wallet) and checks each response. The CPU wrk used is read from
the kernel's accounting of the finished child, so every run reports what its client cost.
Every request carries the bench caller's bearer token, which the script reads from the
environment variable WALLET_BENCH_TOKEN (so no token is written into the script on disk).
"""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests import tokens

LUA = Path(__file__).with_name("graphql.lua")


@dataclass
class LoadRun:
    mode: str
    seconds: float
    responses: int
    good: int
    bad: int
    non2xx: int
    socket_errors: dict[str, int]
    mean_ms: float
    percentiles: list[tuple[float, float]]  # (percentile, milliseconds)
    client_cores: float  # wrk's CPU seconds over the run's wall time
    samples: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.good / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        for level, value in self.percentiles:
            if level >= p:
                return value
        return math.nan

    @property
    def clean(self) -> bool:
        return self.bad == 0 and self.good > 0 and not any(self.socket_errors.values())


def wrk() -> str | None:
    return shutil.which("wrk")


def _lua_string(text: str) -> str:
    assert all(c.isalnum() or c in "-_" for c in text), text
    return f'"{text}"'


def write_script(
    path: Path,
    mode: str,
    wallets: list[str],
    hot: str | None,
    prefix: str,
    budget: int,
    batch: int = 100,
) -> Path:
    ids = ",\n  ".join(_lua_string(w) for w in wallets)
    prelude = (
        f"bench = {{\n mode = {_lua_string(mode)},\n prefix = {_lua_string(prefix)},\n"
        f" budget = {budget},\n batch = {int(batch)},\n"
        f" hot = {_lua_string(hot) if hot else 'nil'},\n"
        f" wallets = {{\n  {ids}\n }},\n}}\n\n"
    )
    path.write_text(prelude + LUA.read_text())
    return path


def run_wrk(
    url: str,
    mode: str,
    *,
    wallets: list[str],
    connections: int,
    threads: int,
    seconds: int,
    scratch: Path,
    prefix: str = "bench",
    hot: str | None = None,
    budget: int = 0,
    batch: int = 100,
    token: str | None = None,
) -> LoadRun:
    """Run wrk for `seconds` (or until each thread got `budget` responses), sending `token`
    (the run's tester's when not given: the caller that created the bench's wallets)."""
    binary = wrk()
    if binary is None:
        raise RuntimeError("wrk is missing: apt-get install -y wrk")
    script = write_script(scratch / f"wrk-{mode}.lua", mode, wallets, hot, prefix, budget, batch)
    threads = max(1, min(threads, connections))
    command = [
        binary,
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={max(1, seconds)}s",
        "--timeout=30s",
        f"--script={script}",
        url,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    env = {**os.environ, "WALLET_BENCH_TOKEN": tokens.mint() if token is None else token}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    figures = json.loads(line.removeprefix("WRK_JSON "))
    latency = figures["latency_us"]
    return LoadRun(
        mode=mode,
        seconds=figures["duration_us"] / 1e6,
        responses=figures["responses"],
        good=figures["good"],
        bad=figures["bad"],
        non2xx=figures["non2xx"],
        socket_errors=figures["socket_errors"],
        mean_ms=latency["mean"] / 1000,
        percentiles=[(p, us / 1000) for p, us in latency["percentiles"]],
        client_cores=cpu / wall,
        samples=figures["samples"],
    )
