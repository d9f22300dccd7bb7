"""The Django Channels peer: the same consumer model as Switchboard, nothing else."""

import os

SECRET_KEY = "bench-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["channels"]
ASGI_APPLICATION = "bench.peers.channels_peer.asgi.application"
USE_TZ = True

_REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
_LAYERS = {
    # A capacity high enough that the layer itself drops nothing during a run.
    "redis": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [_REDIS], "capacity": 100_000, "prefix": "bench"},
    },
    "pubsub": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [_REDIS], "prefix": "bench"},
    },
}
CHANNEL_LAYERS = {"default": _LAYERS[os.environ.get("CHANNEL_LAYER", "redis")]}
