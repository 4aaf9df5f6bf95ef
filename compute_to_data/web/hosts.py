"""Which Host and Origin the report browser accepts (against DNS rebinding).

A page on ``http://evil.example:8750`` whose name an attacker re-points to 127.0.0.1 is, to the
browser, the same origin as the report browser: without a Host check it could read the user's
tasks and post validations as them (and its Origin would match a check against the request's
own Host). So the app answers only requests addressed to a name it serves:

* the address it listens on (``c2d serve --bind``), and ``localhost``, ``127.0.0.1`` and
  ``[::1]`` when that is a loopback address or a wildcard (``0.0.0.0``, ``::``; then also this
  machine's host names);
* the names the administrator lists in the settings (``web.allowed_hosts``, e.g. the name a TLS
  proxy in front serves).

Any other Host gets 400. A request that changes something (POST) and carries an ``Origin`` must
come from one of those names (on the port served, unless the name is one the administrator
listed: a proxy serves its own port), else 403; ``Origin: null`` is left to the CSRF token.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("0.0.0.0", "::", "")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def _bare(host: str) -> str:
    """A host name as compared: lower case, IPv6 without brackets."""
    return host.strip().lower().removeprefix("[").removesuffix("]")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_host(value: str) -> tuple[str, int | None] | None:
    """(host, port) of a Host header value (``name``, ``name:port``, ``[v6]:port``); None if malformed."""
    try:
        parts = urlsplit("//" + value)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.username is not None or parts.password is not None or parts.path:
        return None
    return parts.hostname, port


@dataclass(frozen=True)
class ServedHosts:
    """The names the app answers to, and the port it is served on (None: not known, e.g. tests)."""

    names: frozenset[str]
    #: names the administrator listed: reached through a proxy, on whatever port it serves.
    proxied: frozenset[str]
    port: int | None = None

    @classmethod
    def of(cls, bind: str | None, port: int | None, allowed: Iterable[str] = ()) -> "ServedHosts":
        """For an app listening on ``bind`` (None: loopback) and ``port``, plus ``allowed``."""
        host = _bare(bind or "127.0.0.1")
        names = {host} if host not in WILDCARDS else set()
        if host in WILDCARDS or _is_loopback(host):
            names.update(LOOPBACK_NAMES)
        if host in WILDCARDS:
            names.update(_bare(n) for n in (socket.gethostname(), socket.getfqdn()) if n)
        proxied = frozenset(_bare(a) for a in allowed)
        return cls(frozenset(names) | proxied, proxied, port)

    def accepts_host(self, value: str) -> bool:
        found = split_host(value)
        return found is not None and found[0] in self.names

    def accepts_origin(self, origin: str) -> bool:
        """``scheme://host[:port]`` of a page of this app."""
        try:
            parts = urlsplit(origin)
            port = parts.port
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            return False
        host = parts.hostname
        if host not in self.names:
            return False
        if host in self.proxied or self.port is None:
            return True
        return (port or (443 if parts.scheme == "https" else 80)) == self.port

    def describe(self) -> str:
        shown = sorted(f"[{n}]" if ":" in n else n for n in self.names)
        return ", ".join(shown) + (f" (port {self.port})" if self.port else "")


class TrustedHosts:
    """ASGI middleware: 400 for a Host the app does not serve; 403 for a POST from another origin."""

    def __init__(self, app: ASGIApp, served: ServedHosts) -> None:
        self.app = app
        self.served = served

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        if not self.served.accepts_host(host):
            response = PlainTextResponse(
                f"this report browser does not answer to the host name {host[:200]!r}; open it by one of: "
                f"{self.served.describe()} (an administrator can add names in the settings' web.allowed_hosts)",
                status_code=400,
            )
            await response(scope, receive, send)
            return
        origin = headers.get("origin")
        if scope.get("method", "GET") not in SAFE_METHODS and origin and origin != "null":
            if not self.served.accepts_origin(origin):
                response = PlainTextResponse("cross-site form submission refused", status_code=403)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
