"""Publishing from Django code, after the transaction commits."""

from __future__ import annotations

import os
from typing import Any

from django.db import transaction

from switchboard.django.conf import setting
from switchboard.publish import send_to_group_sync


def _configure() -> None:
    """Where to publish: the SWITCHBOARD setting, unless the environment already says."""
    for name, env in (("REDIS_URL", "REDIS_URL"), ("PREFIX", "SWITCHBOARD_PREFIX")):
        value = setting(name)
        if value and not os.environ.get(env):
            os.environ[env] = str(value)


def publish(group: str, event: str, /, **fields: Any) -> None:
    """Publish now (outside a transaction, or when the event must go even if it rolls back)."""
    _configure()
    send_to_group_sync(group, event, **fields)


def publish_on_commit(group: str, event: str, /, using: str | None = None, **fields: Any) -> None:
    """Publish when the current transaction commits; never if it rolls back (Django's own
    `transaction.on_commit`: outside a transaction, at once). In tests, wrap the view call in
    `switchboard.testing.captured_events()` and Django's `captureOnCommitCallbacks(execute=True)`."""
    transaction.on_commit(lambda: publish(group, event, **fields), using=using)
