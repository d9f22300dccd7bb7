"""Errors as every transport carries them to the client."""

from __future__ import annotations

from typing import Any

from switchboard.observability.stats import STATS


def coded(message: str, code: str) -> dict[str, Any]:
    """A GraphQL error as the client sees it, with `extensions.code` (and counted)."""
    STATS.errors[code] += 1
    return {"message": message, "extensions": {"code": code}}
