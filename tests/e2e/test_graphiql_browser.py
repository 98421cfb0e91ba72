"""GraphiQL in a real browser: Debian's Chromium, headless, driven by Playwright.

The page is the one `wallet dev` serves on /graphql (as a new user opens it), with the network
blocked: every request
that does not go to the API is refused (and the test fails on it), so the page, its scripts and
styles must all come from the API itself, under its own Content-Security-Policy.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, ConsoleMessage, Page, Route, async_playwright

from tests.processes import WALLET, free_port, wait_until

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
# As root, with no sandbox; and nothing that reaches for Google's servers from a closed network.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # No name resolves but the API's address: nothing off this machine can load.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's Chromium is not installed: apt-get install -y chromium",
    ),
]


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            tmp_path / "profile",  # a fresh --user-data-dir
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 800},
        )
        try:
            yield context
        finally:
            await context.close()


async def _block_the_network(page: Page, api_origin: str) -> list[str]:
    """Let requests to the API through; refuse (and list) every other one."""
    refused: list[str] = []

    async def route(route: Route) -> None:
        url = route.request.url
        if url.startswith(api_origin) or url.startswith("data:"):
            await route.continue_()
        else:
            refused.append(url)
            await route.abort()

    await page.route("**/*", route)
    return refused


def _record_console_errors(page: Page) -> list[str]:
    """The page's console errors: a script the policy refused, a hash that did not match."""
    errors: list[str] = []

    def seen(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", seen)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


@contextmanager
def wallet_dev(env: dict[str, str], directory: Path) -> Iterator[str]:
    """`wallet dev` in `directory`, with the run's PostgreSQL and Redis; the GraphiQL URL it
    prints once ready, its developer's token after `#token=`."""
    port = free_port()
    log = directory / "dev.log"
    with log.open("wb") as output:
        popen = subprocess.Popen(
            [WALLET, "dev", "--port", str(port)],
            cwd=directory,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/graphql"

    def said_ready() -> bool:
        if popen.poll() is not None:
            raise RuntimeError(f"wallet dev exited:\n{log.read_text()}")
        return f"GraphiQL: {url}" in log.read_text()

    try:
        wait_until(said_ready, 60, "wallet dev")
        printed = re.search(rf"GraphiQL: ({re.escape(url)}\S*)", log.read_text())
        assert printed is not None
        yield printed[1]
    finally:
        popen.send_signal(signal.SIGTERM)
        popen.wait(60)


async def _run_in_editor(page: Page, operation: str) -> dict[str, Any]:
    """Paste `operation` into the query editor as a person would, run it, read the result pane.

    Pasted, not typed key by key: typed, the editor's completion popup now and then took a
    keystroke and mangled the document (a flaky "Syntax Error")."""
    response = page.locator(".graphiql-response .CodeMirror")
    before = await response.inner_text()
    await page.locator(".graphiql-query-editor .CodeMirror").click()
    await page.keyboard.press("Control+A")
    await page.keyboard.press("Backspace")
    await page.keyboard.insert_text(operation)
    await page.get_by_label(re.compile("^Prettify query")).click()
    await page.get_by_label(re.compile("^Execute query")).click()
    await page.wait_for_function(
        """before => {
          const text = document.querySelector('.graphiql-response .CodeMirror').innerText;
          return text !== before && text.includes('"data"');
        }""",
        arg=before,
        timeout=20_000,
    )
    # The editor's whole text: CodeMirror draws only the lines in view.
    text = await response.evaluate("element => element.CodeMirror.getValue()")
    result: dict[str, Any] = json.loads(text)
    return result


async def test_graphiql_from_wallet_dev_creates_a_wallet_and_deposits_into_it_offline(
    browser: BrowserContext,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    # Its own Redis prefix, so its own rate-limit counters: the tests before it may have
    # spent the shared client address's budget for this minute.
    # No WALLET_JWT_SECRET, as a new user has none: wallet dev makes its own, and the page
    # holds the token it prints.
    env = {name: value for name, value in env.items() if name != "WALLET_JWT_SECRET"}
    with wallet_dev(env, tmp_path) as printed:
        url, _, token = printed.partition("#token=")
        assert token, f"wallet dev printed no token: {printed}"
        origin = url.removesuffix("/graphql")
        page = browser.pages[0] if browser.pages else await browser.new_page()
        refused = await _block_the_network(page, origin)
        console_errors = _record_console_errors(page)
        sent: list[str | None] = []
        page.on(
            "request",
            lambda r: sent.append(r.headers.get("authorization")) if r.method == "POST" else None,
        )
        response = await page.goto(printed)
        assert response is not None
        assert "script-src 'self'" in (await response.all_headers())["content-security-policy"]
        await page.locator(".graphiql-query-editor .CodeMirror").wait_for(timeout=20_000)
        # The explorer plugin is there, and opens.
        await page.get_by_label("Show GraphiQL Explorer").click()
        await page.locator(".graphiql-explorer-root").wait_for(timeout=10_000)

        created = await _run_in_editor(
            page,
            'mutation { createWallet(input: {currency: "EUR"}) '
            "{ wallet { id balance currency } errors { code message } } }",
        )
        assert created.get("data"), created
        wallet = created["data"]["createWallet"]["wallet"]
        assert wallet is not None, created
        assert wallet["balance"] == "0.00"
        await page.screenshot(path=ARTIFACTS / "graphiql-create-wallet.png")

        key = f"browser-{uuid.uuid4()}"
        deposited = await _run_in_editor(
            page,
            f'mutation {{ deposit(input: {{walletId: "{wallet["id"]}", amount: "25.50", '
            f'clientTransactionId: "{key}"}}) {{ transaction {{ id status amount currency '
            "receiverWallet { id balance } } errors { code message } } }",
        )
        await page.screenshot(path=ARTIFACTS / "graphiql-deposit.png")
        payload = deposited["data"]["deposit"]
        assert payload["errors"] == []
        transaction = payload["transaction"]
        assert (transaction["status"], transaction["amount"], transaction["currency"]) == (
            "COMPLETED",
            "25.50",
            "EUR",
        )
        assert transaction["receiverWallet"] == {"id": wallet["id"], "balance": "25.50"}
        # What a person sees, not only what the editor holds.
        seen = await page.locator(".graphiql-response").inner_text()
        assert '"COMPLETED"' in seen
        assert '"25.50"' in seen
        assert refused == []
        assert console_errors == []
        # The token went from the fragment into every query's header, and off the address bar.
        assert sent
        assert set(sent) == {f"Bearer {token}"}
        assert "token" not in page.url
