import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.peers.channels_peer.settings")

import django

django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from bench.peers.channels_peer.consumers import NotifyConsumer  # noqa: E402

application = ProtocolTypeRouter({"websocket": URLRouter([path("ws/notify/", NotifyConsumer.as_asgi())])})
