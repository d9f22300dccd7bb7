"""Publishing from Django code, after the transaction commits."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from switchboard.publish import revoke_sync, send_to_group_sync


def publish(group: str, event: str, /, **fields: Any) -> None:
    """Publish now (outside a transaction, or when the event must go even if it rolls back).
    Where: SWITCHBOARD["REDIS_URL"] and ["PREFIX"] of the settings (switchboard.publish reads
    them in a Django process, for send_to_group_sync and send_to_socket_group too), unless the
    environment's REDIS_URL says otherwise."""
    send_to_group_sync(group, event, **fields)


def publish_on_commit(group: str, event: str, /, using: str | None = None, **fields: Any) -> None:
    """Publish when the current transaction commits; never if it rolls back (Django's own
    `transaction.on_commit`: outside a transaction, at once). In tests, wrap the view call in
    `switchboard.testing.captured_events()` and Django's `captureOnCommitCallbacks(execute=True)`."""
    transaction.on_commit(lambda: publish(group, event, **fields), using=using)


def revoke_on_commit(
    user_id: str,
    group: str,
    *,
    session_id: str | None = None,
    reason: str | None = None,
    using: str | None = None,
) -> None:
    """Take the user's sessions out of `group` when the current transaction commits (the one that
    removes their permission, e.g. a collaborator removed from a note): `switchboard.publish.revoke_sync`,
    never if it rolls back."""
    transaction.on_commit(
        lambda: revoke_sync(user_id, group, session_id=session_id, reason=reason), using=using
    )
