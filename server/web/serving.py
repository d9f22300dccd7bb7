"""Running the app: one process, or N worker processes sharing the listening socket.

Each worker accepts on the edge (switchboard.edge): WebSocket upgrades on Switchboard's own
protocol, every other connection served by hypercorn. SIGTERM first stops accepting, closes every
WebSocket with 1001 (going away), leaves all groups and unsubscribes from Redis, then lets the
HTTP connections end within the grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from multiprocessing import get_context
from multiprocessing.synchronize import Event as ProcessEvent
from typing import Any

from hypercorn.config import Config, Sockets

from switchboard.compat.ws_extensions import use_extension
from switchboard.compat.ws_frame_limit import limit_messages
from switchboard.edge.lifespan import Lifespan
from switchboard.edge.listener import Edge
from switchboard.observability import worker_metrics
from switchboard.observability.gc_pauses import GC_PAUSES, freeze_start_up_objects
from switchboard.observability.logs import configure_logging
from switchboard.settings import Settings
from switchboard.ws.deflate import extension_factory

log = logging.getLogger(__name__)

SHUTDOWN_POLL = 0.1


def make_config(host: str, port: int, app_path: str, settings: Settings) -> Config:
    config = Config()
    config.application_path = app_path
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    # A Logger (not "-") so hypercorn adds no handler of its own: its lines go through ours,
    # once, in our format (JSON lines included).
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 5.0
    # Frames over the limit are refused by hypercorn itself (close 1009) before they are buffered.
    config.websocket_max_message_size = settings.max_message_bytes
    config.backlog = 2048
    return config


def serve(config: Config, workers: int) -> int:
    """Serve until SIGTERM or SIGINT; return an exit code."""
    if workers <= 1:
        _run_worker(config, None, None, None)
        return 0
    sockets = config.create_sockets()
    metrics_dir, made = _metrics_dir()
    ctx = get_context("spawn")
    stop = ctx.Event()
    processes = [
        ctx.Process(
            target=_run_worker, args=(config, sockets, stop, metrics_dir), name=f"switchboard-worker-{i}"
        )
        for i in range(workers)
    ]

    def on_signal(*_: Any) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
        sock.close()
    if made:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return max((p.exitcode or 0) for p in processes)


def _metrics_dir() -> tuple[str, bool]:
    """Where the workers share their metrics (SWITCHBOARD_METRICS_DIR, or a temporary directory
    made here, and True: removed on exit); each worker is given it (_run_worker)."""
    given = os.environ.get("SWITCHBOARD_METRICS_DIR")
    if given:
        os.makedirs(given, exist_ok=True)
        worker_metrics.clear(given)
        return given, False
    return tempfile.mkdtemp(prefix="switchboard-metrics-"), True


def load_app(path: str) -> Any:
    """Import the app at `module:attribute`, set up as a serving process: logging configured
    before; after, the start-up objects frozen out of the garbage collector's way and its pauses
    timed for /metrics."""
    settings = Settings.from_env()
    configure_logging(settings)
    use_extension(extension_factory(settings))
    limit_messages(settings.max_message_bytes)
    module_name, _, attribute = path.partition(":")
    app = getattr(importlib.import_module(module_name), attribute or "app")
    frozen = freeze_start_up_objects()
    log.debug("froze %d start-up objects out of the garbage collector's way", frozen)
    GC_PAUSES.install()
    # The event loop shares the interpreter with one worker thread (switchboard.offload): take
    # the lock back from it every millisecond rather than every five.
    sys.setswitchinterval(0.001)
    return app


def _run_worker(
    config: Config, sockets: Sockets | None, stop: ProcessEvent | None, metrics_dir: str | None
) -> None:
    if metrics_dir is not None:
        # This worker's own environment (a spawned process), read by the app's Settings: the
        # parent's is left as it was.
        os.environ["SWITCHBOARD_METRICS_DIR"] = metrics_dir
    try:
        import uvloop
    except ImportError:
        asyncio.run(_worker(config, sockets, stop))
    else:
        uvloop.run(_worker(config, sockets, stop))


async def _worker(config: Config, sockets: Sockets | None, stop: ProcessEvent | None) -> None:
    app = load_app(config.application_path)
    settings = Settings.from_env()
    signalled = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signalled.set)
    state: dict[str, Any] = {}
    lifespan = Lifespan(app, state)
    await lifespan.startup()
    edge = Edge(app, config, settings, state)
    listening = sockets if sockets is not None else config.create_sockets()
    try:
        await edge.start(list(listening.insecure_sockets))
        while not signalled.is_set() and not (stop is not None and stop.is_set()):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signalled.wait(), SHUTDOWN_POLL)
        edge.stop_accepting()
        await _drain(app)
        await edge.stop(config.graceful_timeout)
    finally:
        await lifespan.shutdown()
        if sockets is None:
            for sock in listening.insecure_sockets:
                sock.close()


async def _drain(app: Any) -> None:
    """Close every WebSocket with 1001 and end every HTTP stream (an app of ours: Switchboard.drain)."""
    drain = getattr(app, "drain", None)
    if drain is not None:
        log.info("shutting down: closing websockets with 1001, ending streams")
        await drain()


def serve_uvicorn(app_path: str, host: str, port: int, settings: Settings) -> int:
    """One process under uvicorn (pip install "switchboard-live[uvicorn]"): about half hypercorn's
    memory per WebSocket. SIGTERM closes every WebSocket with 1001 first, as under hypercorn."""
    import uvicorn

    app = load_app(app_path)

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises SIGTERM after a graceful shutdown (exit by signal); exit 0 instead.
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self.handle_exit)
            yield

        async def shutdown(self, sockets: Any = None) -> None:
            await _drain(app)
            await super().shutdown(sockets)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ws=_uvicorn_ws(),
        ws_max_size=settings.max_message_bytes,
        ws_per_message_deflate=settings.ws_compression,  # our extension either way (compat/ws_extensions.py)
        ws_ping_interval=None,  # Switchboard pings at the protocol level itself
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
        backlog=2048,
    )
    Server(config).run()
    return 0


UVICORN_WS = os.environ.get("SWITCHBOARD_UVICORN_WS", "switchboard")
"""uvicorn's WebSocket implementation: Switchboard's own protocol (edge/uvicorn_ws.py, what the
edge runs under hypercorn), or uvicorn's "wsproto" or "websockets" (the app's ASGI path)."""


def _uvicorn_ws() -> Any:
    if UVICORN_WS == "switchboard":
        from switchboard.edge.uvicorn_ws import UvicornWebSocket

        return UvicornWebSocket
    return UVICORN_WS
