"""GraphiQL, served by the API itself: the page on GET /graphql, its files under /graphiql/.

The scripts and styles are copies of GraphiQL's npm packages kept in this package
(static/graphiql/, written by scripts/vendor_graphiql.py, listed with versions and hashes in
assets.json), so the page works with no network and no CDN. The page names every file with its
Subresource Integrity hash, and sends a Content-Security-Policy that lets it load and run only
what this server sends and talk only to this server (HTTP and WebSocket).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
from dataclasses import dataclass
from importlib import resources

from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

# Where the files are served from, and where they live in the package.
PREFIX = "/graphiql"
_PACKAGE, _DIRECTORY = "wallet.web", "static/graphiql"
# The page's own script and styles (after the vendored ones, which define what they use).
_OWN_STYLES = ("wallet-graphiql.css",)
_OWN_SCRIPTS = ("wallet-graphiql.js",)

# 'self' covers ws:// and wss:// to this host as well. Fonts and the icon are data: URLs
# inside GraphiQL's stylesheet and the page.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
_ICON = (
    "data:image/svg+xml,<svg xmlns=%22http://www.w3.org/2000/svg%22 viewBox=%220 0 100 100%22>"
    "<text y=%22.9em%22 font-size=%2280%22>&#x1f4b0;</text></svg>"
)


@dataclass(frozen=True, slots=True)
class Asset:
    """A file the page loads: a vendored copy (package, version) or one of the page's own."""

    file: str
    integrity: str
    package: str | None = None
    version: str | None = None

    @property
    def url(self) -> str:
        return f"{PREFIX}/{self.file}"


def _directory() -> resources.abc.Traversable:
    return resources.files(_PACKAGE).joinpath(_DIRECTORY)


def integrity(content: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(content).digest()).decode()


@functools.cache
def vendored_assets() -> tuple[Asset, ...]:
    """GraphiQL's files as recorded when they were taken from npm (assets.json)."""
    records = json.loads(_directory().joinpath("assets.json").read_text())
    return tuple(
        Asset(r["file"], r["integrity"], package=r["package"], version=r["version"])
        for r in records
    )


@functools.cache
def page() -> str:
    """The GraphiQL page. Vendored files carry the hash recorded from npm, so a copy altered
    since is refused by the browser; the page's own files carry the hash of what is here."""
    own = {
        name: Asset(name, integrity(_directory().joinpath(name).read_bytes()))
        for name in (*_OWN_STYLES, *_OWN_SCRIPTS)
    }
    assets = [*vendored_assets(), *(own[name] for name in _OWN_STYLES + _OWN_SCRIPTS)]
    styles = "\n".join(
        f'    <link rel="stylesheet" href="{html.escape(a.url)}" integrity="{a.integrity}">'
        for a in assets
        if a.file.endswith(".css")
    )
    scripts = "\n".join(
        f'    <script src="{html.escape(a.url)}" integrity="{a.integrity}"></script>'
        for a in assets
        if a.file.endswith(".js")
    )
    return f"""<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>wallet: GraphiQL</title>
    <link rel="icon" href="{_ICON}">
{styles}
  </head>
  <body>
    <div id="graphiql" class="graphiql-container">Loading...</div>
{scripts}
  </body>
</html>
"""


def page_response() -> HTMLResponse:
    return HTMLResponse(
        page(),
        headers={
            "content-security-policy": CONTENT_SECURITY_POLICY,
            "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer",
        },
    )


def static_files() -> StaticFiles:
    """The files under PREFIX, straight from the installed package."""
    return StaticFiles(packages=[(_PACKAGE, _DIRECTORY)])
