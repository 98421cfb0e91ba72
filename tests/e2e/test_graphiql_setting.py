"""GraphiQL is served where WALLET_GRAPHIQL says: by default in development, not in production."""

from __future__ import annotations

import uuid

import pytest

from tests import tokens
from tests.e2e.graphql_app import running_app
from wallet.config import Settings

pytestmark = pytest.mark.timeout(60)

BROWSER = {"accept": "text/html"}


@pytest.mark.parametrize(
    ("environment", "graphiql", "served"),
    [
        ("development", None, True),
        ("production", None, False),
        ("production", True, True),
    ],
)
async def test_a_browser_gets_graphiql_only_where_it_is_served(
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    environment: str,
    graphiql: bool | None,
    served: bool,
) -> None:
    given = {} if graphiql is None else {"graphiql": graphiql}
    settings = Settings(
        jwt_secret=tokens.SECRET,
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=f"{redis_prefix}:{uuid.uuid4().hex[:8]}",
        rate_limits_enabled=False,
        environment=environment,  # type: ignore[arg-type]
        **given,
    )
    async with running_app(settings) as app:
        page = await app.client.get("/graphql", headers=BROWSER)
        script = await app.client.get("/graphiql/wallet-graphiql.js")
        answer = await app.api.data("{ __typename }")
    assert (page.status_code, script.status_code) == ((200, 200) if served else (404, 404))
    assert ("graphiql" in page.text.lower()) is served
    assert answer == {"__typename": "Query"}
