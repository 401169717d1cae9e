"""A fake CyCraft AIR server (stdlib http.server in a thread) for the adapter's tests.

It serves routes the tests register, replays scripted replies first, records every request,
and answers 401 when the API key header is wrong, echoing what it got (as some servers do),
so the tests can check the adapter never repeats the key.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

FIXTURES = Path(__file__).parent / "fixtures"
ORG = "org-42"
BASE = f"/api/v1/organizations/{ORG}"


def payload(name: str) -> Any:
    """A recorded-shape fixture (tests/fixtures/cycraft__*.json)."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Seen:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Reply:
    """What the fake answers: JSON (or raw bytes), a status and headers; `delay` stalls it."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


Route = Reply | Callable[[Seen], Reply]


class FakeCyCraft:
    """The fake server; `route` and `script` before use, `seen` afterwards."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.routes: dict[tuple[str, str], Route] = {}
        self.scripted: dict[tuple[str, str], deque[Reply]] = {}
        self.requests: list[Seen] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def route(self, method: str, path: str, reply: Route) -> None:
        """Answer every `method path` request with `reply` (or what it returns)."""
        self.routes[(method, path)] = reply

    def script(self, method: str, path: str, *replies: Reply) -> None:
        """Answer the next requests to `method path` with these, once each, before the route."""
        self.scripted.setdefault((method, path), deque()).extend(replies)

    def seen(self, method: str | None = None, path: str | None = None) -> list[Seen]:
        """Requests received, optionally only those to one method and path."""
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and (path is None or r.path == path)
        ]

    def answer(self, request: Seen) -> Reply:
        self.requests.append(request)
        presented = request.headers.get("authorization", "")
        if presented != f"Bearer {self.api_key}":
            body = payload("cycraft__error_401.json")
            body["error"]["message"] += f" (received {presented!r})"
            return Reply(401, body)
        key = (request.method, request.path)
        if self.scripted.get(key):
            return self.scripted[key].popleft()
        route = self.routes.get(key)
        if route is None:
            return Reply(404, {"error": {"code": "not_found", "message": request.path}})
        return route(request) if callable(route) else route


def _handler(fake: FakeCyCraft) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            request = Seen(
                method=self.command,
                path=url.path,
                query=dict(parse_qsl(url.query)),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=json.loads(raw) if raw else None,
            )
            reply = fake.answer(request)
            if reply.delay:
                time.sleep(reply.delay)
            data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            if reply.body is None:
                data = b""
            content_type = "text/html" if isinstance(reply.body, bytes) else "application/json"
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except ConnectionError:
                pass  # the client gave up waiting (the timeout test)

        do_GET = do_POST = do_PATCH = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            """Quiet: the tests read `fake.requests` instead."""

    return Handler
