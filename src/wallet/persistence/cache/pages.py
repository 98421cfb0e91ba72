"""First pages of a history cut from its cached head, without asking PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from wallet.domain.model import MAX_PAGE_SIZE, HistoryRequest, Page, Transaction
from wallet.persistence.cache.entries import HeadTable
from wallet.persistence.history_filter import HistoryFilter

# The cached head of a history: the newest transactions, one more than a page can hold so
# that a full first page knows whether there is a next one.
HEAD_SIZE = MAX_PAGE_SIZE + 1

_Item = TypeVar("_Item")


def is_first_page(request: HistoryRequest) -> bool:
    """Whether the request asks for a page that a head can hold: the newest ones."""
    return (
        request.after is None
        and request.before is None
        and not request.backward
        and request.limit <= MAX_PAGE_SIZE
    )


def page_from_head(head: list[Transaction], complete: bool, request: HistoryRequest) -> Page | None:
    """The first page asked for, cut from the cached head; None when the head cannot tell.

    The head holds every transaction newer than its oldest one, so the newest that match a
    filter are in it too. It answers unless the filter leaves no more than a page in it and
    older transactions, not cached, might match as well.
    """
    return _cut(head, complete, request, lambda t: (t.type.value, t.status.value), lambda t: t)


def page_from_entry(entry: bytes | str, request: HistoryRequest) -> Page | None:
    """page_from_head on the head as cached, making only the page's transactions of it.

    A head holds 101 transactions, and one query may read a hundred pages that arrive in the
    same turn of the event loop: making all of each held the loop for 150 ms.
    """
    table = HeadTable(entry)
    return _cut(range(len(table)), table.complete, request, table.kind, table.transaction)


def _cut(
    head: Sequence[_Item],
    complete: bool,
    request: HistoryRequest,
    kind_of: Callable[[_Item], tuple[str, str]],
    made: Callable[[_Item], Transaction],
) -> Page | None:
    keeps = HistoryFilter.of(request).keeps
    matches: list[_Item] = []
    for item in head:
        if keeps(*kind_of(item)):
            matches.append(item)
            if len(matches) > request.limit:
                page = [made(match) for match in matches[: request.limit]]
                return Page(page, has_next=True, has_previous=False)
    if complete:
        return Page([made(match) for match in matches], has_next=False, has_previous=False)
    return None
