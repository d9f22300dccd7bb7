"""Refusing subscriptions over plain HTTP inside Strawberry's HTTP view.

Strawberry offers no hook between parsing a request and executing it, so the view overrides
`AsyncBaseHTTPView.execute_operation`, an undocumented method whose parameters are
(request, request_adapter, request_data, context, root_value, sub_response) (tested: 0.330-0.341).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from graphql import GraphQLError, OperationType, get_operation_ast, parse
from strawberry.types import ExecutionResult

SUBSCRIPTION_OVER_HTTP = (
    "subscriptions are served over WebSocket (graphql-transport-ws or graphql-ws) at this path"
)


@lru_cache(maxsize=512)
def is_subscription(query: str | None, operation_name: str | None) -> bool:
    """Apps send the same few documents again and again: each is parsed here once, not per request."""
    try:
        operation = get_operation_ast(parse(query or ""), operation_name)
    except GraphQLError:
        return False  # let Strawberry report the syntax error
    return operation is not None and operation.operation is OperationType.SUBSCRIPTION


class RefuseSubscriptions:
    """Mixed into a Strawberry view (before it): a subscription gets BAD_USER_INPUT."""

    async def execute_operation(
        self, request: Any, request_adapter: Any, request_data: Any, *args: Any, **kwargs: Any
    ) -> Any:
        if not isinstance(request_data, list) and is_subscription(
            request_data.query, request_data.operation_name
        ):
            error = GraphQLError(SUBSCRIPTION_OVER_HTTP, extensions={"code": "BAD_USER_INPUT"})
            return ExecutionResult(data=None, errors=[error])
        return await super().execute_operation(  # type: ignore[misc]
            request, request_adapter, request_data, *args, **kwargs
        )
