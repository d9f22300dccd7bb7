"""The `SWITCHBOARD` dict of the Django settings, with defaults."""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    "REDIS_URL": None,  # where publish_on_commit publishes (else the REDIS_URL environment variable)
    "PREFIX": None,  # SWITCHBOARD_PREFIX of the servers (else the environment's, else "switchboard")
    "HOOK_KEY": None,  # SWITCHBOARD_HOOK_KEY of the servers: required; the views refuse without it
    "EXPIRES_IN": 60,  # seconds before Switchboard asks again: the bound on logout taking effect
    "URL": None,  # Switchboard's /graphql URL, as the browser reaches it (views.connection_info)
    "SECRET": None,  # SWITCHBOARD_SECRET, only to mint tokens for pages (without the connect endpoint)
}


def setting(name: str) -> Any:
    return {**DEFAULTS, **getattr(settings, "SWITCHBOARD", {})}[name]
