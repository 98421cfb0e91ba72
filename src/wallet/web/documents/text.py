"""Text PostgreSQL cannot store, refused at the edge whatever the field."""

from __future__ import annotations

import re
from collections.abc import Iterator

# Text that PostgreSQL cannot store (NUL) or that is not Unicode at all (a lone surrogate,
# which JSON's \ud800 escapes can carry): refused at the edge, whatever the field.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
INVALID_TEXT = "strings may not hold NUL characters or lone surrogates"


def clean_text(text: str) -> bool:
    return _UNSTORABLE.search(text) is None


def strings(value: object) -> Iterator[str]:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
