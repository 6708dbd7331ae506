"""Small HTTP servers on loopback for the outbound guard's tests: each records the requests
it gets and answers ``/redirect?to=URL`` with a redirect, anything else with 200 (or with
the fixed answer it was given: every request redirected, or a provider-like error)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import pytest


@dataclass
class Server:
    url: str = ""
    port: int = 0
    hits: list[dict[str, str]] = field(default_factory=list)
    # every request redirected there, when set
    redirect_all: str | None = None
    # every request answered with this (status, content type, body), when set
    answer: tuple[int, str, bytes] | None = None


def _handler(server: Server) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            server.hits.append(
                {
                    "method": self.command,
                    "path": urlsplit(self.path).path,
                    "host": self.headers.get("Host", ""),
                    "authorization": self.headers.get("Authorization", ""),
                }
            )

        def _reply(self) -> None:
            self._record()
            parts = urlsplit(self.path)
            target = server.redirect_all
            if target is None and parts.path == "/redirect":
                target = parse_qs(parts.query)["to"][0]
            if target is not None:
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status, ctype, body = server.answer or (
                200,
                "text/plain",
                b"ok:" + self.headers.get("Authorization", "").encode(),
            )
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_HEAD = _reply

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def serve_http(host: str) -> Iterator[Server]:
    """A recording server on ``host`` (skips the test when it cannot listen there)."""
    server = Server()
    try:
        httpd = http.server.ThreadingHTTPServer((host, 0), _handler(server))
    except OSError as exc:
        pytest.skip(f"cannot listen on {host}: {exc}")
    server.port = httpd.server_address[1]
    server.url = f"http://{host}:{server.port}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield server
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def allowed() -> Iterator[Server]:
    """On 127.0.0.1: the tests allow-list it."""
    yield from serve_http("127.0.0.1")


@pytest.fixture
def internal() -> Iterator[Server]:
    """On 127.0.0.2: never allow-listed; nothing may reach it."""
    yield from serve_http("127.0.0.2")
