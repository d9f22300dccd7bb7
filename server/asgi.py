"""The ASGI application object for servers that import one: `hypercorn server.asgi:app`."""

from server.app import create_app

app = create_app()
