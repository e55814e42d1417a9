"""The local web servers (``study dashboard``, ``serve``) answer only their own origin.

A server on 127.0.0.1 is still reachable from any web page the user opens: through DNS
rebinding, ``attacker.example`` resolves to 127.0.0.1 and the page's scripts send requests with
``Host: attacker.example``. Checking that the ``Host`` (and, when a browser sends one, the
``Origin``) names this server, with its port, refuses every such request: the allow-list is
127.0.0.1, localhost, [::1] and the ``--host`` given. A web page of another origin never gets
an answer, so it can neither read the studies nor change them.

Both servers are wrapped here, one as WSGI (optuna-dashboard) and one as ASGI (Gradio), so the
rule is written once.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from typing import Any

LOOPBACK = ("127.0.0.1", "localhost", "::1")
READS = ("GET", "HEAD")  # what a read-only server accepts
WILDCARDS = ("0.0.0.0", "::", "")


def _this_machine() -> list[str]:
    name = socket.gethostname()
    try:
        full, aliases, addresses = socket.gethostbyname_ex(name)
    except OSError:
        return [name]
    return [name, full, *aliases, *addresses]


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """Every ``Host`` header value that names this server: ``name:port`` for loopback and the
    ``--host`` given (IPv6 in brackets), and the bare name on port 80. A wildcard ``--host``
    (0.0.0.0, ::) adds this machine's name and addresses: what other machines use."""
    given = [host, *(_this_machine() if host in WILDCARDS else ())]
    names = {(f"[{n}]" if ":" in n else n).lower() for n in (*LOOPBACK, *given)}
    return frozenset({f"{n}:{port}" for n in names} | (names if port == 80 else set()))


def refusal(host: str | None, origin: str | None, allowed: frozenset[str]) -> str | None:
    """Why a request with these headers is refused, or None when it is this server's own."""
    if (host or "").strip().lower() not in allowed:
        return "foreign Host header: this server answers only its own address"
    if origin is not None and origin.strip().lower() not in _origins(allowed):
        return "foreign Origin header: this server answers only its own pages"
    return None


def _origins(allowed: Iterable[str]) -> set[str]:
    return {f"{scheme}://{h}" for h in allowed for scheme in ("http", "https")}


def wsgi_guard(app: Callable, allowed: frozenset[str], allow_writes: bool = False) -> Callable:
    """``app`` answering only its own origin, and only reads unless ``allow_writes``."""

    def guarded(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        why = refusal(environ.get("HTTP_HOST"), environ.get("HTTP_ORIGIN"), allowed)
        status = "403 Forbidden"
        if why is None and not allow_writes and environ.get("REQUEST_METHOD") not in READS:
            why = "read-only: start the dashboard with --allow-writes to change studies"
            status = "405 Method Not Allowed"
        if why is None:
            return app(environ, start_response)
        body = (why + "\n").encode()
        headers = [("Content-Type", "text/plain; charset=utf-8"), ("Allow", ", ".join(READS))]
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return [body]

    return guarded


class AsgiGuard:
    """ASGI middleware refusing requests (HTTP and WebSocket) from a foreign origin."""

    def __init__(self, app: Any, allowed: frozenset[str]) -> None:
        self.app, self.allowed = app, allowed

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)  # lifespan
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        why = refusal(headers.get("host"), headers.get("origin"), self.allowed)
        if why is None:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        body = (why + "\n").encode()
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")],
            }
        )
        await send({"type": "http.response.body", "body": body})
