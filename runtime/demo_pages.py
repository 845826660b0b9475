"""The reference clients under /demo/: the web widget embedded in three pages of a made-up
shop (/demo/widget, /demo/widget/pricing, /demo/widget/docs) and the agents' inbox
(/demo/inbox), with their scripts and styles from the repository's web/ folder (no CDN,
no build step). Served in dev; in prod only with DEMO_PAGES=true.

    routes = [..., *demo_routes()]

The pages are static files: the widget is given the channel's public key by the page's
address (`/demo/widget?key=…`), as a customer's page would hold it in its own config, and
everything else comes from the GraphQL API the pages call, on the same origin (so no CORS
or WebSocket origin rule is loosened for them).
"""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.config import settings

log = logging.getLogger("parley")

WEB = Path(__file__).resolve().parent.parent / "web"
# Path under /demo → the page's file under web/.
PAGES = {
    "/widget": "widget/home.html",
    "/widget/pricing": "widget/pricing.html",
    "/widget/docs": "widget/docs.html",
    "/inbox": "inbox/index.html",
}
# Scripts, styles and sockets from this origin only; nothing inline, no frames, no forms
# posted anywhere. ('self' covers ws:// and wss:// to the same host in CSP Level 3.)
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),
]


class _SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _page(file: str) -> Route:
    async def endpoint(_: Request) -> Response:
        return FileResponse(WEB / file, media_type="text/html; charset=utf-8")

    return Route(next(path for path, name in PAGES.items() if name == file), endpoint, methods=["GET"])


def demo_routes() -> list[BaseRoute]:
    """Mount /demo/ when the settings serve it (DEMO_PAGES; by default in dev only) and the
    web/ folder is there (a checkout; the Docker image does not carry it)."""
    if not settings.serves_demo_pages:
        return []
    if not WEB.is_dir():
        log.warning("DEMO_PAGES: no %s folder beside the code (the Docker image has none): /demo/ is not served", WEB)
        return []
    pages = Router(routes=[*(_page(file) for file in PAGES.values()), Mount("/assets", StaticFiles(directory=WEB))])
    return [Mount("/demo", app=_SecurityHeaders(pages))]


def demo_urls(base_url: str, channel_key: str) -> tuple[str, str]:
    """The widget's page (with the channel's public key) and the inbox, as `parley run` prints them."""
    return f"{base_url}/demo/widget?key={channel_key}", f"{base_url}/demo/inbox"
