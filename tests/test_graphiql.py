"""GraphiQL works with no network beyond the API: the page and everything it loads come from
the API itself (app/graphiql.py, app/static/).

The HTTP tests read the served page and its assets. The browser tests open the page in
headless Chromium (Debian's `chromium`, driven by Playwright) against a real API process,
with every request to another origin aborted and recorded, then run a query and a
subscription through GraphiQL's editor, run button and result pane.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, Request, Route, WebSocket, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeout

from tests.support.live_views import track, view_event
from tests.support.provision import StackTenant
from tests.support.stacks import Stack

CHROMIUM = Path("/usr/bin/chromium")
HTML = {"Accept": "text/html"}
UI_WAIT = 30.0  # seconds for the page to render or an answer to show


# -- the page and its assets over HTTP ----------------------------------------------------------


class _Addresses(HTMLParser):
    """Every address in a src or href attribute, with the tag's integrity hash."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href"):
            if values.get(name):
                self.found.append((values[name], values.get("integrity")))  # type: ignore[arg-type]


def addresses(html: str) -> list[tuple[str, str | None]]:
    parser = _Addresses()
    parser.feed(html)
    return parser.found


def sri(body: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode()


async def test_the_page_names_no_other_server(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers=HTML)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "GraphiQL" in html
    found = addresses(html)
    assets = [address for address, _ in found if not address.startswith("data:")]
    assert len(assets) >= 5, found  # react, react-dom, graphiql (script and style), the explorer plugin
    assert all(address.startswith("/graphql/static/") for address in assets), assets
    # Nothing else in the page names a server (the inline favicon's SVG namespace is no request).
    without_inline = re.sub(r'(?:src|href)="data:[^"]*"', "", html)
    assert "://" not in without_inline and "unpkg" not in without_inline


async def test_every_asset_is_served_as_the_page_expects_and_cached_for_good(client: httpx.AsyncClient) -> None:
    page = (await client.get("/graphql", headers=HTML)).text
    assets = [(address, integrity) for address, integrity in addresses(page) if not address.startswith("data:")]
    for address, integrity in assets:
        response = await client.get(address)
        assert response.status_code == 200, address
        assert integrity is not None and sri(response.content) == integrity, address  # the browser checks it too
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable", address
    bundle = next(address for address, _ in assets if address.endswith("graphiql.min.js"))
    compressed = await client.get(bundle, headers={"Accept-Encoding": "gzip"})
    assert compressed.headers["content-encoding"] == "gzip"
    assert int(compressed.headers.get("content-length", 0)) < len(compressed.content) / 2
    assert (await client.get("/graphql/static/react@18.2.0/LICENSE")).status_code == 200
    assert (await client.get("/graphql/static/nothing@1.0.0/x.js")).status_code == 404


# -- the page in a browser that can reach nothing but the API ------------------------------------


@dataclass
class OfflinePage:
    """A page whose requests to any origin but the API's are aborted and recorded."""

    page: Page
    origin: str
    foreign: list[str] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)

    async def route(self, route: Route, request: Request) -> None:
        if _origin(request.url) == self.origin or request.url.startswith("data:"):
            await route.continue_()
        else:
            self.foreign.append(request.url)
            await route.abort("internetdisconnected")

    def opened(self, socket: WebSocket) -> None:
        self.sockets.append(socket.url)

    async def open_graphiql(self) -> None:
        await self.page.goto(f"{self.origin}/graphql")
        try:
            await self.page.locator(".graphiql-execute-button").wait_for(timeout=UI_WAIT * 1000)
        except PlaywrightTimeout:
            shown = (await self.page.inner_text("body"))[:200]
            pytest.fail(f"GraphiQL did not render (the page shows {shown!r}); requests to other servers: {self.foreign}")

    async def set_editor(self, selector: str, text: str) -> None:
        """Set a CodeMirror editor's text through its own API, as typing would (GraphiQL's
        editors close brackets as one types, which would garble typed text)."""
        await self.page.locator(f"{selector} .CodeMirror").first.evaluate("(el, text) => el.CodeMirror.setValue(text)", text)

    async def run(self, query: str, headers: dict[str, str]) -> None:
        await self.set_editor(".graphiql-query-editor", query)
        await self.page.get_by_role("button", name="Headers").click()
        await self.set_editor(".graphiql-editor-tool .graphiql-editor:not(.hidden)", json.dumps(headers))
        await self.page.locator(".graphiql-execute-button").click()

    async def result(self) -> str:
        return await self.page.locator(".graphiql-response .CodeMirror").evaluate("el => el.CodeMirror.getValue()")

    async def wait_for_result(self, predicate: Callable[[str], bool], timeout: float = UI_WAIT) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = await self.result()
            if predicate(text):
                return text
            await asyncio.sleep(0.2)
        pytest.fail(f"the result pane never showed the expected answer; it shows: {text!r}")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium: CI must have it (.ci/run installs it); elsewhere its absence skips."""
    if CHROMIUM.exists():
        return str(CHROMIUM)
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: browser tests need Debian's chromium (apt-get install chromium)")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); CI runs these tests")


@pytest_asyncio.fixture(scope="module")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            await browser.close()


@pytest_asyncio.fixture
async def offline(browser: Browser, memory_stack: Stack) -> AsyncIterator[OfflinePage]:
    context = await browser.new_context()
    page = await context.new_page()
    offline = OfflinePage(page=page, origin=memory_stack.base_url)
    await context.route("**/*", offline.route)
    page.on("websocket", offline.opened)
    try:
        yield offline
    finally:
        await context.close()


@pytest.fixture
def stack_tenant(memory_stack: Stack) -> StackTenant:
    return memory_stack.tenant()


@pytest.mark.usefixtures("server_logs_on_failure")
async def test_a_query_runs_in_graphiql_with_no_other_server_reachable(
    offline: OfflinePage, stack_tenant: StackTenant
) -> None:
    await offline.open_graphiql()
    await offline.run("{ viewer { role organizationId } }", {"Authorization": f"Bearer {stack_tenant.org_admin_token}"})
    text = await offline.wait_for_result(lambda text: '"role"' in text)
    assert json.loads(text) == {"data": {"viewer": {"role": "org_admin", "organizationId": stack_tenant.org_id}}}
    assert offline.foreign == []


@pytest.mark.usefixtures("server_logs_on_failure")
async def test_a_subscription_runs_in_graphiql_over_the_apis_own_websocket(
    offline: OfflinePage, stack_tenant: StackTenant, memory_stack: Stack
) -> None:
    await offline.open_graphiql()
    query = f'subscription {{ profileViews(profileId: "{stack_tenant.profile_id}") {{ eventId }} }}'
    await offline.run(query, {"Authorization": f"Bearer {stack_tenant.org_admin_token}"})
    # Live delivery is at-most-once and has no "subscribed" signal: send views until one shows.
    sent: list[str] = []
    deadline = time.monotonic() + UI_WAIT
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as http:
        while time.monotonic() < deadline:
            event = view_event(stack_tenant.profile_id, tag="graphiql")
            await track(http, memory_stack, stack_tenant.ingestion_key, [event])
            sent.append(event["eventId"])
            text = await offline.result()
            if any(event_id in text for event_id in sent):
                break
            await asyncio.sleep(0.5)
    text = await offline.result()
    shown = json.loads(text)["data"]["profileViews"]["eventId"]
    assert shown in sent, text
    assert offline.sockets and all(url == memory_stack.ws_url for url in offline.sockets), offline.sockets
    assert offline.foreign == []
