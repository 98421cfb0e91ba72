"""GraphiQL's files ship in the package, unchanged since they were taken from npm."""

from __future__ import annotations

import re
from importlib import resources

from wallet.web import graphiql

STATIC = resources.files("wallet.web").joinpath("static/graphiql")


def test_every_vendored_file_has_the_hash_recorded_when_it_was_taken_from_npm() -> None:
    assets = graphiql.vendored_assets()
    assert {a.package for a in assets} == {
        "react",
        "react-dom",
        "graphiql",
        "@graphiql/plugin-explorer",
    }
    for asset in assets:
        assert re.fullmatch(r"\d+\.\d+\.\d+", asset.version or ""), asset
        content = STATIC.joinpath(asset.file).read_bytes()
        assert graphiql.integrity(content) == asset.integrity, asset.file


def test_the_page_loads_every_file_from_this_server_with_its_integrity_hash() -> None:
    page = graphiql.page()
    loaded = re.findall(r'(?:src|href)="([^"]+)" integrity="(sha384-[^"]+)"', page)
    by_url = dict(loaded)
    for asset in graphiql.vendored_assets():
        assert by_url[asset.url] == asset.integrity
    own = by_url["/graphiql/wallet-graphiql.js"]
    assert own == graphiql.integrity(STATIC.joinpath("wallet-graphiql.js").read_bytes())
    assert all(url.startswith("/graphiql/") for url in by_url)
    # Nothing inline for the policy to have to allow.
    assert "<script>" not in page
    assert "<style" not in page
    assert "unpkg" not in page


def test_the_page_is_sent_with_a_policy_that_allows_only_this_server() -> None:
    response = graphiql.page_response()
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self';" in policy
    assert "unsafe" not in policy
