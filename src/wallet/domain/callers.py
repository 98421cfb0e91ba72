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
