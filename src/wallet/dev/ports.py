"""Ports for `wallet dev`'s servers: free ones, and the same ones from one run to the next."""

from __future__ import annotations

import json
import random
import socket
from pathlib import Path

from wallet.dev.children import say

# The embedded servers' ports on first use; kept in ./.wallet/ports.json from then on, so a
# `psql` line that worked yesterday works today.
DEFAULT_PORTS = {"postgres": 54320, "redis": 63790}


def _ephemeral_ports() -> range:
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def can_bind(port: int) -> bool:
    with socket.socket() as s:
        # As PostgreSQL and Redis bind: connections of a previous run in TIME_WAIT do not
        # keep the port from them.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A free port below the range the kernel hands out to outgoing connections: a server
    restarted on it cannot find it taken by a client's own end, nor a client trying it while
    the server is down connect to itself (TCP's simultaneous open)."""
    ephemeral = _ephemeral_ports()
    for _ in range(100):
        port = random.randrange(10_000, ephemeral.start)
        if can_bind(port):
            return port
    raise OSError("no free port below the ephemeral range")


def accepts(port: int) -> bool:
    """Whether something listens on `port` of the loopback interface."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def stable_port(data: Path, name: str) -> int:
    """The port `name` had last time (or its default); another, remembered, if that is taken."""
    path = data / "ports.json"
    try:
        ports: dict[str, int] = json.loads(path.read_text())
    except (OSError, ValueError):
        ports = {}
    wanted = ports.get(name, DEFAULT_PORTS[name])
    port = wanted if can_bind(wanted) else free_port()
    if port != wanted and name in ports:
        say(f"port {wanted} of the embedded {name} is taken; using {port} from now on")
    if ports.get(name) != port:
        ports[name] = port
        path.write_text(json.dumps(ports, indent=2) + "\n")
    return port
