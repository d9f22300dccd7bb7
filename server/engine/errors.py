"""Errors as every transport carries them to the client."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from switchboard.observability.stats import Stats


def coded(message: str, code: str) -> dict[str, Any]:
    """A GraphQL error as the client sees it, with `extensions.code`."""
    return {"message": message, "extensions": {"code": code}}


def count_errors(stats: Stats, errors: Iterable[Any]) -> None:
    """Count errors sent to a client, by code (/metrics: switchboard_errors_total)."""
    for error in errors:
        extensions = error.get("extensions") if isinstance(error, dict) else None
        stats.errors[str((extensions or {}).get("code"))] += 1
