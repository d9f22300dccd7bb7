"""The ASGI application object for servers that import one: `hypercorn switchboard.web.asgi:app`.

Importing this module sets up the process as `switchboard serve` does (logging; the start-up
objects frozen out of the garbage collector's way, its pauses timed): a process's entry point."""

from switchboard.compat.ws_extensions import use_extension
from switchboard.compat.ws_frame_limit import limit_messages
from switchboard.observability.gc_pauses import GC_PAUSES, freeze_start_up_objects
from switchboard.observability.logs import configure_logging
from switchboard.settings import Settings
from switchboard.web.app import create_app
from switchboard.ws.deflate import extension_factory

settings = Settings.from_env()
configure_logging(settings)
use_extension(extension_factory(settings))
limit_messages(settings.max_message_bytes)
app = create_app(settings)
freeze_start_up_objects()
GC_PAUSES.install()
