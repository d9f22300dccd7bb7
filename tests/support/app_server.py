"""A stand-in for the app beside Switchboard: a real HTTP server (its own thread, its own port)
with a connect endpoint and a note permission endpoint, as a Django or Rails app would serve.

- POST /connect: the `session` cookie names a logged-in user in `sessions` (200 {"user",
  "expires_in"}); unknown or missing: 401. A session value "slow" sleeps past any timeout,
  "huge" answers 50 MB; every answer takes `connect_delay` seconds first.
- POST /permission: note ids "ok*" allowed, "no*" 403, "bad*" 400, "slow*" sleep, "boom*" 500.
Every request is recorded (path, headers, JSON body) for the test to inspect.
"""

from __future__ import annotations

import json
import threading
import time
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.processes import free_port

HUGE = b'{"user": "h", "padding": "' + b"x" * (50 << 20) + b'"}'


class AppServer:
    def __init__(self, expires_in: float | None = None, connect_delay: float = 0.0) -> None:
        self.port = free_port()
        self.connect_delay = connect_delay
        self.sessions: dict[str, str] = {}  # session cookie -> user id
        self.expires_in = expires_in
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.in_flight = 0  # requests being answered now, and the most at once
        self.most_in_flight = 0
        self._lock = threading.Lock()
        app = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                app.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                with app._lock:
                    app.in_flight += 1
                    app.most_in_flight = max(app.most_in_flight, app.in_flight)
                try:
                    status, answer = app.answer(self.path, self.headers.get("cookie"), body)
                finally:
                    with app._lock:
                        app.in_flight -= 1
                data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # Switchboard keeps up to 32 connections at once per endpoint

        self._server = Server(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, path: str, cookie: str | None, body: Any) -> tuple[int, Any]:
        if path == "/connect":
            jar: SimpleCookie = SimpleCookie(cookie or "")
            session = jar["session"].value if "session" in jar else None
            time.sleep(self.connect_delay)
            if session == "slow":
                time.sleep(5)
            if session == "huge":
                return 200, HUGE
            user = self.sessions.get(session or "")
            if user is None:
                return 401, {"error": "not logged in"}
            return 200, {"user": user, "roles": [], "expires_in": self.expires_in}
        if path == "/permission":
            note = str(body.get("note_id"))
            if note.startswith("slow"):
                time.sleep(5)
            if note.startswith("boom"):
                return 500, {"error": "the app fell over"}
            if note.startswith("bad"):
                return 400, {"error": "not a note id"}
            if note.startswith("no"):
                return 403, {"allowed": False}
            return 200, {"allowed": note.startswith("ok")}
        return 404, {}

    def start(self) -> AppServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
