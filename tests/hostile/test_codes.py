"""Every mistake a client can make is answered with a code from the README's table."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.client import Api
from tests.hostile.test_documents import deep_fragments
from tests.processes import Process

pytestmark = pytest.mark.timeout(60)

README = Path(__file__).parents[2] / "README.md"


def _readme_codes() -> set[str]:
    table = README.read_text().split("## Error codes", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Z_]+)` \|", table, flags=re.MULTILINE))


HISTORY = "query($id: ID!) {{ wallet(id: $id) {{ transactions({}) {{ edges {{ cursor }} }} }} }}"


@pytest.mark.parametrize(
    ("query", "variables", "code"),
    [
        pytest.param("{ __typename", {}, "INVALID_INPUT", id="a syntax error"),
        pytest.param("{ nope }", {}, "INVALID_INPUT", id="an unknown field"),
        pytest.param(
            "{ " + "__typename " * 2500 + "}", {}, "QUERY_TOO_COSTLY", id="over the token limit"
        ),
        pytest.param(deep_fragments(3), {}, "QUERY_TOO_COSTLY", id="too deep"),
        pytest.param(
            "{ " + " ".join(f"a{i}: __typename" for i in range(40)) + " }",
            {},
            "QUERY_TOO_COSTLY",
            id="too many aliases",
        ),
        pytest.param(HISTORY.format("first: $n"), {"n": "ten"}, "INVALID_INPUT", id="an Int var"),
        pytest.param(HISTORY.format("first: 1.5"), {}, "INVALID_INPUT", id="an Int literal"),
        pytest.param(HISTORY.format("first: -1"), {}, "INVALID_INPUT", id="a negative page"),
        pytest.param(
            HISTORY.format('last: 2, after: "x"'), {}, "INVALID_INPUT", id="both directions"
        ),
        pytest.param(HISTORY.format('after: "x"'), {}, "INVALID_CURSOR", id="a bad cursor"),
    ],
)
async def test_a_clients_mistake_carries_a_code_from_the_readme(
    hostile_api: Process,
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, object],
    code: str,
) -> None:
    wallet = await Api(client, hostile_api.url).new_wallet("100.00")
    body = {"query": query, "variables": {"id": wallet, **variables}}
    response = await client.post(hostile_api.url, json=body)
    errors = response.json()["errors"]
    assert [error["extensions"]["code"] for error in errors] == [code]
    assert code in _readme_codes()


async def test_a_malformed_id_is_invalid_input_with_its_argument_and_an_unknown_one_is_null(
    hostile_api: Process, client: httpx.AsyncClient
) -> None:
    query = "query($id: ID!) { wallet(id: $id) { id } transaction(id: $id) { id } }"
    malformed = await client.post(hostile_api.url, json={"query": query, "variables": {"id": "x"}})
    unknown = await client.post(
        hostile_api.url,
        json={"query": query, "variables": {"id": "00000000-0000-0000-0000-000000000000"}},
    )
    errors = malformed.json()["errors"]
    assert sorted(e["path"][0] for e in errors) == ["transaction", "wallet"]
    assert all(e["extensions"] == {"code": "INVALID_INPUT", "field": ["id"]} for e in errors)
    assert unknown.json() == {
        "data": {"wallet": None, "transaction": None},
        "extensions": {"cost": {"requested": 4, "limit": 5000}},
    }


async def test_first_null_says_what_is_wrong_with_it(
    hostile_api: Process, client: httpx.AsyncClient
) -> None:
    wallet = await Api(client, hostile_api.url).new_wallet("100.00")
    body = {"query": HISTORY.format("first: null"), "variables": {"id": wallet}}
    (error,) = (await client.post(hostile_api.url, json=body)).json()["errors"]
    assert error["extensions"] == {"code": "INVALID_INPUT", "field": ["first"]}
    assert "null" in error["message"]
