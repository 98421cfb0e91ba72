"""The children of `wallet dev`: each in a process group of its own, dying with its parent."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1


class DevError(Exception):
    """`wallet dev` could not start; the message says why and what to do."""


def say(message: str) -> None:
    print(f"wallet dev: {message}", file=sys.stderr, flush=True)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass(frozen=True)
class Account:
    """A user other than this one to run a child as."""

    uid: int
    gid: int
    name: str


@dataclass
class Child:
    """A process `wallet dev` started, and how to stop it."""

    name: str
    popen: subprocess.Popen[bytes]
    stop_signal: signal.Signals
    # Seconds it may take to stop before it is killed.
    grace: float

    def exited(self) -> bool:
        return self.popen.poll() is not None

    def send_stop(self, sig: signal.Signals | None = None) -> None:
        """Send its stop signal, or `sig`, unless it has exited."""
        if not self.exited():
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig or self.stop_signal)

    def wait(self) -> None:
        try:
            self.popen.wait(self.grace)
        except subprocess.TimeoutExpired:
            say(f"{self.name} did not stop within {self.grace:g} s; killing it")
            self.popen.kill()
            self.popen.wait()
        # Anything it started in its own group that outlived it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)

    def wait_for(self, ready: Callable[[], bool], timeout: float, log: Path | None) -> None:
        """Until `ready()`; a DevError (with the end of its log) if it exits or times out."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.exited():
                detail = f"; the end of {log}:\n{tail(log)}" if log else ""
                raise DevError(f"{self.name} exited with {self.popen.returncode}{detail}")
            if time.monotonic() > deadline:
                raise DevError(f"{self.name} was not ready after {timeout:g} s")
            time.sleep(0.05)


def _die_with_parent(sig: signal.Signals) -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    # Loaded here, in the parent: the child between fork and exec should only make the call.
    libc = ctypes.CDLL(None, use_errno=True)

    def arrange() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)

    return arrange


def spawn(
    name: str,
    args: list[str],
    *,
    stop_signal: signal.Signals,
    grace: float,
    env: dict[str, str] | None = None,
    output: IO[bytes] | None = None,
    account: Account | None = None,
    cwd: Path | None = None,
) -> Child:
    """Start a child in a group of its own (a terminal's Ctrl-C does not reach it), which Linux
    sends `stop_signal` should this process die without stopping it."""
    popen = subprocess.Popen(
        args,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
        process_group=0,
        preexec_fn=_die_with_parent(stop_signal),
        user=account.uid if account else None,
        group=account.gid if account else None,
        extra_groups=[] if account else None,
    )
    return Child(name, popen, stop_signal, grace)
