"""GraphiQL served entirely by the API: the page and the scripts and styles it loads.

Strawberry's page loads React and GraphiQL from a public CDN, so where no CDN is reachable
(a self-hosted install behind a firewall, an air-gapped network) it shows "Loading..."
forever. The same files, vendored from the npm registry by scripts/vendor_graphiql.py, ship
in this package (app/static/, see its README) and are served under /graphql/static/.

Every asset's address names its package version, so a refresh changes the address and the
files may be cached for good.
"""

from __future__ import annotations

import functools
from pathlib import Path

from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC = Path(__file__).resolve().parent / "static"
ASSETS_PATH = "/graphql/static"
ASSETS_ROUTE = "graphiql-assets"
PLACEHOLDER = "{{ assets }}"
CACHE_FOREVER = "public, max-age=31536000, immutable"


class VersionedAssets(StaticFiles):
    """Static files whose paths carry their version: cacheable for a year, never revalidated."""

    def file_response(self, full_path: str, stat_result: object, scope: Scope, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)  # type: ignore[arg-type]
        response.headers["Cache-Control"] = CACHE_FOREVER
        return response


def graphiql_assets() -> Mount:
    """The route serving the vendored files; compressed, since GraphiQL's bundle is 3.5 MB.
    A missing folder (an install without its package data) fails here, when the app is built."""
    files = VersionedAssets(directory=STATIC / "graphiql")
    return Mount(ASSETS_PATH, app=GZipMiddleware(files, minimum_size=1024), name=ASSETS_ROUTE)


@functools.cache
def _page_template() -> str:
    return (STATIC / "graphiql.html").read_text(encoding="utf-8")


def graphiql_page(request: Request) -> HTMLResponse:
    """The GraphiQL page with its assets at this server's own address (under any root path
    the app is mounted at), so the browser fetches nothing from anywhere else."""
    assets = request.url_for(ASSETS_ROUTE, path="").path.rstrip("/")
    return HTMLResponse(_page_template().replace(PLACEHOLDER, assets))
