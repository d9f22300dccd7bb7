"""Refusing subscriptions over plain HTTP, and mutations over GET, inside Strawberry's HTTP view.

Strawberry offers no hook between parsing a request and executing it, so the view overrides
`AsyncBaseHTTPView.execute_operation`, an undocumented method whose parameters are
(request, request_adapter, request_data, context, root_value, sub_response) (tested: 0.330-0.341).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from cross_web import HTTPException
from graphql import GraphQLError, OperationType, get_operation_ast, parse
from strawberry.types import ExecutionResult

from switchboard.offload import OFF_LOOP_LENGTH, off_loop
from switchboard.token_limit import check_token_limit

SUBSCRIPTION_OVER_HTTP = (
    "subscriptions over HTTP need Accept: text/event-stream (GraphQL over SSE) or multipart/mixed"
    " (Apollo's multipart subscriptions); or use WebSocket (graphql-transport-ws) at this path"
)


MUTATION_OVER_GET = "mutations are not run over GET: use POST"
CACHED_QUERY_LENGTH = OFF_LOOP_LENGTH  # longer documents are parsed each time rather than kept


async def operation_type(
    query: str | None, operation_name: str | None, max_tokens: int | None = None
) -> OperationType | None:
    """The type of the request's operation (None if it does not parse: Strawberry says why);
    parsing stops at `max_tokens` (the schema's limit), so a huge document costs no more than a
    refused one. A text with neither word is a query (nothing parsed); a long one is parsed
    beside the event loop."""
    if query is None or ("subscription" not in query and "mutation" not in query):
        return OperationType.QUERY
    try:
        check_token_limit(query, max_tokens)
    except GraphQLError:
        return None  # let Strawberry report the error
    if len(query) > CACHED_QUERY_LENGTH:
        return await off_loop(_operation_type, query, operation_name, max_tokens)
    return _cached(query, operation_name, max_tokens)


def _operation_type(
    query: str | None, operation_name: str | None, max_tokens: int | None
) -> OperationType | None:
    try:
        operation = get_operation_ast(parse(query or "", max_tokens=max_tokens), operation_name)
    except GraphQLError:
        return None  # let Strawberry report the error (with the same token limit)
    return operation.operation if operation is not None else None


# Apps send the same few documents again and again: each is parsed here once, not per request.
_cached = lru_cache(maxsize=512)(_operation_type)


class RefuseSubscriptions:
    """Mixed into a Strawberry view (before it): a subscription gets BAD_USER_INPUT; a mutation
    sent with GET is 405, as the GraphQL-over-HTTP specification says (a cross-site link or
    no-cors fetch carries the user's cookie, never the method)."""

    max_tokens: int | None = None  # the schema's token limit, set by the view

    async def execute_operation(
        self, request: Any, request_adapter: Any, request_data: Any, *args: Any, **kwargs: Any
    ) -> Any:
        if not isinstance(request_data, list):
            kind = await operation_type(request_data.query, request_data.operation_name, self.max_tokens)
            if kind is OperationType.SUBSCRIPTION:
                error = GraphQLError(SUBSCRIPTION_OVER_HTTP, extensions={"code": "BAD_USER_INPUT"})
                return ExecutionResult(data=None, errors=[error])
            if kind is OperationType.MUTATION and request_adapter.method == "GET":
                raise HTTPException(405, MUTATION_OVER_GET)
        return await super().execute_operation(  # type: ignore[misc]
            request, request_adapter, request_data, *args, **kwargs
        )
