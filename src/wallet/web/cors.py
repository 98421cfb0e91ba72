"""Cross-origin requests: a frontend served from another origin may call the API.

The origins are the ones allowed to open a subscription WebSocket (WALLET_ALLOWED_ORIGINS),
plus, in development, pages on this machine at any port. A browser asks first (a preflight
OPTIONS, answered here without a token: it carries none) whether it may send Authorization.
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from wallet.config import Settings

# Pages on this machine, at any port: a frontend's dev server beside `wallet dev`.
LOOPBACK_ORIGINS = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?"


def cors(settings: Settings) -> Middleware | None:
    """The CORS middleware for these settings, or None when no other origin is allowed."""
    regex = None if settings.production else LOOPBACK_ORIGINS
    if not settings.allowed_origins and regex is None:
        return None
    return Middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_origin_regex=regex,
        allow_methods=["GET", "POST"],
        allow_headers=["authorization", "content-type", "accept", "x-request-id"],
        expose_headers=["x-request-id", "retry-after"],
        max_age=600,
    )
