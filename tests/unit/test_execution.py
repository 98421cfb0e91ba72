"""The short way through plain fields answers exactly as Strawberry's own execution does."""

from __future__ import annotations

from enum import Enum
from typing import Any

import pytest
import strawberry
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from wallet.schema.execution import WalletExecution


class Colour(Enum):
    RED = "red"


@strawberry.type
class Thing:
    name: str
    nickname: str | None
    colour: Colour
    count: int


@strawberry.type
class Query:
    @strawberry.field
    def things(self) -> list[Thing | None]:
        broken_name = Thing(name="x", nickname=None, colour=Colour.RED, count=1)
        broken_name.name = None  # type: ignore[assignment]  # null where the type forbids it
        wrong_count = Thing(name="y", nickname="why", colour=Colour.RED, count=1)
        wrong_count.count = "many"  # type: ignore[assignment]  # a value Int refuses
        fine = Thing(name="z", nickname="zed", colour=Colour.RED, count=3)
        return [fine, broken_name, wrong_count]


def _answer(execution: type[StrawberryGraphQLCoreExecutionContext]) -> dict[str, Any]:
    schema = strawberry.Schema(query=Query, execution_context_class=execution)
    result = schema.execute_sync("{ things { name nickname colour count } }")
    return {
        "data": result.data,
        "errors": [(e.message, e.path) for e in result.errors or []],
    }


def test_the_short_way_answers_values_and_errors_as_strawberry_does() -> None:
    ours = _answer(WalletExecution)

    assert ours == _answer(StrawberryGraphQLCoreExecutionContext)
    assert ours["data"] == {
        "things": [{"name": "z", "nickname": "zed", "colour": "RED", "count": 3}, None, None]
    }
    assert len(ours["errors"]) == 2


@pytest.mark.parametrize("query", ["{ things { colour } }", "{ things { nickname } }"])
def test_a_plain_field_of_every_kind_reads_the_same(query: str) -> None:
    ours = strawberry.Schema(query=Query, execution_context_class=WalletExecution)
    theirs = strawberry.Schema(query=Query)

    assert ours.execute_sync(query).data == theirs.execute_sync(query).data
