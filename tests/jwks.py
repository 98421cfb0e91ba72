"""A local identity provider for the tests: a JWKS served over real HTTP from a thread, and
keys to sign tokens with (tests/integration/test_jwks.py, tests/e2e/test_access_matrix.py)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

AUDIENCE = "wallet-api"


@dataclass
class Provider:
    """What the local identity provider serves, changed by the tests as they go."""

    keys: list[dict[str, Any]] = field(default_factory=list)
    down: bool = False
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self) -> tuple[int, bytes]:
        with self.lock:
            self.requests += 1
            if self.down:
                return 503, b"down for maintenance"
            return 200, json.dumps({"keys": self.keys}).encode()


@dataclass(frozen=True)
class SigningKey:
    kid: str
    algorithm: str
    private: Any

    def public_jwk(self) -> dict[str, Any]:
        codec = RSAAlgorithm if self.algorithm == "RS256" else ECAlgorithm
        jwk: dict[str, Any] = codec.to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.algorithm, "use": "sig"}

    def sign(self, subject: str = "alice", **claims: Any) -> str:
        now = int(time.time())
        body = {"sub": subject, "aud": AUDIENCE, "iat": now, "exp": now + 60, **claims}
        return jwt.encode(body, self.private, algorithm=self.algorithm, headers={"kid": self.kid})


@contextmanager
def serve_jwks(state: Provider) -> Iterator[str]:
    """Serve `state` on a free local port; yields the JWKS URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = state.answer()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
