"""Every error a client sees carries `extensions.code`; unexpected ones are masked and logged."""

from __future__ import annotations

import logging
import uuid

from graphql.error import GraphQLError
from strawberry.extensions import MaskErrors

from switchboard.context import Context
from switchboard.exceptions import SwitchboardError
from switchboard.observability.stats import Stats

log = logging.getLogger(__name__)

INTERNAL = "INTERNAL_SERVER_ERROR"
VALIDATION = "GRAPHQL_VALIDATION_FAILED"


def _with_code(error: GraphQLError, message: str, extensions: dict[str, object]) -> GraphQLError:
    return GraphQLError(
        message=message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None,
        extensions={**(error.extensions or {}), **extensions},
    )


def count(stats: Stats | None, error: GraphQLError) -> GraphQLError:
    """Count a coded error in the app's stats (by code); the error, for chaining."""
    if stats is not None:
        stats.errors[str((error.extensions or {}).get("code"))] += 1
    return error


def coded(error: GraphQLError) -> GraphQLError:
    """Known refusals keep their message and get their code; anything else becomes an opaque id."""
    original = error.original_error
    if isinstance(original, SwitchboardError):
        return _with_code(error, str(original), {"code": original.code})
    if original is None or isinstance(original, GraphQLError):
        # Parse and validation errors, and GraphQLErrors raised on purpose.
        code = (error.extensions or {}).get("code", VALIDATION)
        return _with_code(error, error.message, {"code": code})
    error_id = uuid.uuid4().hex
    log.error("unexpected error %s at %s", error_id, error.path, exc_info=original)
    return _with_code(error, "Internal server error", {"code": INTERNAL, "errorId": error_id})


class ErrorCodes(MaskErrors):
    """Applies `coded` to every error of every result, streamed ones included."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=lambda _: True)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        context = self.execution_context.context
        return count(context.services.stats if isinstance(context, Context) else None, coded(error))
