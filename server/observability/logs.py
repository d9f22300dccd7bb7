"""Logging: human-readable lines by default, JSON lines with SWITCHBOARD_LOG_FORMAT=json.

Every line about a connection carries its session id: the connection's task sets
`current_session`, and code outside it (a session's handlers) passes `extra={"session": id}`.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar

import orjson

from switchboard.settings import Settings

current_session: ContextVar[str | None] = ContextVar("switchboard_session", default=None)


class SessionFilter(logging.Filter):
    """Adds `record.session` from the context unless the call passed one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "session", None) is None:
            record.session = current_session.get()
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        session = getattr(record, "session", None)
        return f"{line} [session={session}]" if session else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,  # tells the workers of `serve --workers N` apart
        }
        session = getattr(record, "session", None)
        if session:
            entry["session"] = session
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(settings: Settings) -> None:
    """Set the root handler once; later calls only adjust the level."""
    root = logging.getLogger()
    root.setLevel(settings.log_level)
    if any(getattr(h, "_switchboard", False) for h in root.handlers):
        return
    # hypercorn logs through its own handler as well; let ours be the only one.
    for name in ("hypercorn.error", "hypercorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    handler = logging.StreamHandler()
    handler._switchboard = True  # type: ignore[attr-defined]
    handler.addFilter(SessionFilter())
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    root.addHandler(handler)
