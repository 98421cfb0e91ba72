"""Where the CPU went during a phase: API, worker, PostgreSQL, the load generator, and the rest.

The machine has few cores and is shared, so a figure means little without knowing who else was
busy. A background thread reads /proc every quarter second and keeps, for every process it
sees, the first and the last CPU time it read; a phase's use of a group is the sum of the
differences (a process born during the phase counts from zero). PostgreSQL is split: backends
serving the benchmark's own databases, plus the server's shared processes (WAL writer,
checkpointer, ...), count as "postgres"; backends of other databases count as "others".
Redis is the machine's one server, counted whole. "others" is the machine's busy time that
none of these explain; the three busiest such processes are named.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a process, or None once it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after its last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def _cmdline(pid: int) -> str:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, summed over cores."""
    values = [int(v) for v in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return (total - idle) / TICK, total / TICK


@dataclass
class Groups:
    """Decides which group a process belongs to; unknown ones are left out (the rest)."""

    trees: dict[str, list[int]] = field(default_factory=dict)  # group -> root pids
    databases: list[str] = field(default_factory=list)  # PostgreSQL databases of ours

    def classify(self, pid: int, parents: dict[int, int], line: str) -> str:
        # The nearest listed ancestor wins: the API is a child of the benchmark's process too.
        current: int | None = pid
        while current:
            for name, roots in self.trees.items():
                if current in roots:
                    return name
            current = parents.get(current)
        if line.startswith("redis-server"):
            return "redis"  # the machine's one Redis: shared, if others' tests use it too
        if line.startswith("postgres") or "/postgres " in line:
            if "postgres: " not in line:
                return "postgres"  # the postmaster itself
            if any(f" {db} " in line for db in self.databases):
                return "postgres"
            # Backends show "user database host(port) state"; shared processes do not.
            return "others" if "(" in line else "postgres"
        return ""


class CpuMeter:
    """Samples CPU per group from start() to stop(); see the module's docstring."""

    def __init__(self, groups: Groups, interval: float = 0.25) -> None:
        self.groups = groups
        self.interval = interval
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._group: dict[int, str] = {}
        self._names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._machine_start = (0.0, 0.0)
        self._wall_start = 0.0
        self.result: dict[str, float] = {}
        # CPU seconds of each group over the phase, unrounded: the per-request costs use these.
        self.seconds: dict[str, float] = {}
        self.wall = 0.0
        self.busiest_others: list[str] = []

    def _sample(self, born_now: bool) -> None:
        stats = {}
        for entry in PROC.iterdir():
            if entry.name.isdigit():
                stat = _stat(int(entry.name))
                if stat is not None:
                    stats[int(entry.name)] = stat
        parents = {pid: parent for pid, (parent, _) in stats.items()}
        for pid, (_, seconds) in stats.items():
            if pid not in self._group:
                self._names[pid] = " ".join(
                    _cmdline(pid).split()
                )  # read once: it may be gone at the end
                self._group[pid] = self.groups.classify(pid, parents, self._names[pid])
                # A process already running at the start counts from then; a later one from 0.
                self._first[pid] = seconds if born_now else 0.0
            self._last[pid] = seconds

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample(born_now=False)

    def start(self) -> CpuMeter:
        self._machine_start = machine_busy_seconds()
        self._wall_start = time.monotonic()
        self._sample(born_now=True)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        """Cores used on average by each group, the rest ("others") and the idle remainder.
        A meter stops once: stopping it again answers the same figures."""
        if self._stop.is_set():
            return self.result
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample(born_now=False)
        wall = time.monotonic() - self._wall_start
        busy_end, total_end = machine_busy_seconds()
        busy = busy_end - self._machine_start[0]
        total = total_end - self._machine_start[1]
        cores = dict.fromkeys([*self.groups.trees, "postgres", "redis"], 0.0)
        seconds = dict(cores)
        strangers: list[tuple[float, int]] = []
        for pid, group in self._group.items():
            used = (self._last[pid] - self._first[pid]) / wall
            if group and group != "others":
                cores[group] += used
                seconds[group] += self._last[pid] - self._first[pid]
            elif used >= 0.05:
                strangers.append((used, pid))
        # Who else was busy, to tell a slow phase from a crowded machine.
        strangers.sort(reverse=True)
        self.busiest_others = [
            f"{used:.2f} {self._names[pid][:80] or pid}" for used, pid in strangers[:3]
        ]
        ours = sum(cores.values())
        machine_cores = os.cpu_count() or 1
        cores["others"] = max(0.0, busy / wall - ours) if total else 0.0
        cores["idle"] = max(0.0, machine_cores - busy / wall)
        self.result = {name: round(value, 2) for name, value in cores.items()}
        self.seconds = seconds
        self.wall = wall
        return self.result


def describe(cores: dict[str, float], order: Iterable[str] | None = None) -> str:
    names = list(order) if order is not None else list(cores)
    return " ".join(f"{name} {cores[name]:.2f}" for name in names if name in cores)
