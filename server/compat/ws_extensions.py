"""Which WebSocket extensions the ASGI servers negotiate.

Neither server has a setting for the extension itself. hypercorn (tested: 0.17, 0.18) builds
`[PerMessageDeflate()]` in `hypercorn.protocol.ws_stream.Handshake.accept` for every connection;
uvicorn's wsproto implementation (tested: 0.30-0.54) builds `[PerMessageDeflate()]` when
`ws_per_message_deflate` is on. Both look the name up in their module when a handshake runs, so
`use_extension` replaces that name: every handshake of the process then gets `factory()`.
tests/test_compat.py fails when an upgrade stops going through that name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from wsproto.extensions import Extension

MODULES = ("hypercorn.protocol.ws_stream", "uvicorn.protocols.websockets.wsproto_impl")
NAME = "PerMessageDeflate"


def use_extension(factory: Callable[[], Extension]) -> list[str]:
    """Make each server's handshakes use `factory()`; returns the modules changed (those installed)."""
    changed = []
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if not hasattr(module, NAME):
            raise RuntimeError(f"{name} no longer builds {NAME}: see switchboard/compat/ws_extensions.py")
        setattr(module, NAME, factory)
        changed.append(name)
    return changed
