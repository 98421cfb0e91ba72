"""The codes the edge puts in `extensions.code`, in one place.

Those a use case may also give are the domain's (domain/errors.ErrorCode); the others are
the edge's own. The README's error table lists them all, and a hostile test holds the
server to it.
"""

from __future__ import annotations

from wallet.domain.errors import ErrorCode

INVALID_INPUT = ErrorCode.INVALID_INPUT.value
RATE_LIMITED = ErrorCode.RATE_LIMITED.value
INTERNAL = ErrorCode.INTERNAL.value
QUERY_TOO_COSTLY = "QUERY_TOO_COSTLY"
TOO_MANY_MUTATIONS = "TOO_MANY_MUTATIONS"
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
