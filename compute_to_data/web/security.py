"""Headers and CSRF checks that keep reports (which may carry scripts) away from the app.

* App pages run no script at all: ``script-src 'none'``.
* A report is shown in ``<iframe sandbox="allow-scripts">`` (no ``allow-same-origin``) and is
  served from its own path with ``Content-Security-Policy: sandbox allow-scripts; ...``, so even
  opened on its own it runs in an opaque origin: it cannot read the app's cookies (which are
  HttpOnly and SameSite=Strict anyway), call the app, submit forms or navigate the top page.
* Every state change is a form POST carrying the session's CSRF token, compared in constant time.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

APP_CSP = (
    "default-src 'none'; script-src 'none'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
REPORT_CSP = (
    "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline' data:; img-src data: blob:; font-src data:; media-src data:; "
    "connect-src 'none'; form-action 'none'; base-uri 'none'; frame-ancestors 'self'"
)
IMAGE_CSP = "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
#: the iframe's sandbox attribute: scripts may run, but in an opaque origin.
REPORT_SANDBOX = "allow-scripts"

BASE_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}


class SecurityHeaders:
    """ASGI middleware: the base headers everywhere, the app's CSP unless a route set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.decode("latin-1").lower() for k, _ in headers}
                for key, value in BASE_HEADERS.items():
                    if key not in present:
                        headers.append((key.encode(), value.encode()))
                if "content-security-policy" not in present:
                    headers.append((b"content-security-policy", APP_CSP.encode()))
                    headers.append((b"x-frame-options", b"DENY"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def tokens_match(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))
