"""Who is asking: the caller a bearer token names, as the use cases will see it.

The edge (web/tokens.py) turns a verified token into a Caller; the rules decide what it may do.
"""

from __future__ import annotations

from dataclasses import dataclass

# The scopes this service gives meaning to; a token may carry others, which are kept and ignored.
DEPOSIT_SCOPE = "wallet:deposit"
ADMIN_SCOPE = "wallet:admin"
# Caller ids no token may name: `legacy` owns what was written before callers were known
# (migration 0003), and `anonymous` is every caller when tokens are not required.
RESERVED_IDS = frozenset({"legacy", "anonymous"})
# Ids are stored as owners and in keys, and count as rate-limit keys in Redis.
MAX_ID_LENGTH = 255


def id_problem(caller_id: str) -> str | None:
    """Why `caller_id` cannot name a caller, or None when it can."""
    if not caller_id.strip():
        return "it is empty"
    if caller_id in RESERVED_IDS:
        return f"{caller_id!r} is reserved"
    if len(caller_id) > MAX_ID_LENGTH:
        return f"it is longer than {MAX_ID_LENGTH} characters"
    if "\x00" in caller_id:
        return "it holds a NUL"
    try:
        caller_id.encode("utf-8")
    except UnicodeEncodeError:
        return "it holds a lone surrogate"
    return None


@dataclass(frozen=True, slots=True)
class Caller:
    """A caller: `id` is the token's `sub`, `scopes` what its `scope` claim grants."""

    id: str
    scopes: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        """May do anything to any wallet."""
        return ADMIN_SCOPE in self.scopes

    @property
    def may_deposit(self) -> bool:
        """May deposit into any wallet and fund a new one: the funding service, or an admin
        (who may do anything)."""
        return DEPOSIT_SCOPE in self.scopes or self.is_admin
