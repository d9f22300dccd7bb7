"""/graphql over HTTP: Strawberry's Quart view, authenticated by bearer token."""

from __future__ import annotations

import logging
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, cast

import orjson
from cross_web import HTTPException
from graphql import GraphQLError, OperationType, get_operation_ast, parse
from quart import Request, Response, request
from strawberry.quart.views import GraphQLView
from strawberry.schema.base import BaseSchema
from strawberry.types import ExecutionResult

from server.auth import authenticate
from server.context import Context, Services
from server.exceptions import SwitchboardError, Unauthenticated
from server.ratelimit import BucketTable

log = logging.getLogger(__name__)


STATIC = Path(__file__).parent / "static"


@cache
def offline_graphiql() -> str | None:
    """Our GraphiQL page, whose scripts are served from /static/vendor; None if those are missing."""
    if not (STATIC / "vendor" / "graphiql.min.js").exists():
        return None
    return (STATIC / "graphiql.html").read_text()


@lru_cache(maxsize=512)
def _is_subscription(query: str | None, operation_name: str | None) -> bool:
    """Apps send the same few documents again and again: each is parsed here once, not per request."""
    try:
        operation = get_operation_ast(parse(query or ""), operation_name)
    except GraphQLError:
        return False  # let Strawberry report the syntax error
    return operation is not None and operation.operation is OperationType.SUBSCRIPTION


def error_response(error: SwitchboardError, status: int = 200) -> Response:
    """A GraphQL-shaped error body carrying the error's code."""
    body = {"data": None, "errors": [{"message": str(error), "extensions": {"code": error.code}}]}
    return Response(orjson.dumps(body), status=status, content_type="application/json")


class SwitchboardView(GraphQLView[Context, None]):
    """Queries and mutations over HTTP; WebSockets are served by server.ws."""

    def __init__(self, schema: BaseSchema, services: Services, **kwargs: Any) -> None:
        super().__init__(schema, graphql_ide="graphiql" if services.settings.graphiql else None, **kwargs)
        self.services = services
        settings = services.settings
        self.buckets = BucketTable(settings.mutation_rate, settings.mutation_burst)

    async def execute_operation(
        self,
        request: Any,
        request_adapter: Any,
        request_data: Any,
        context: Context,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        if not isinstance(request_data, list) and _is_subscription(
            request_data.query, request_data.operation_name
        ):
            error = GraphQLError(
                "subscriptions are served over WebSocket (graphql-transport-ws or graphql-ws) at this path",
                extensions={"code": "BAD_USER_INPUT"},
            )
            return ExecutionResult(data=None, errors=[error])
        return await super().execute_operation(
            request, request_adapter, request_data, context, *args, **kwargs
        )

    async def render_graphql_ide(self, request: Request) -> Response:
        page = offline_graphiql()
        if page is None:
            log.warning("GraphiQL assets missing (run `make assets`): the page loads them from a CDN")
            return await super().render_graphql_ide(request)
        return Response(page, content_type="text/html; charset=utf-8")

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    def decode_json(self, data: str | bytes) -> object:
        return orjson.loads(data)

    async def dispatch_request(self, **kwargs: object) -> Any:
        try:
            user = authenticate(self.services.settings.secret, request.headers.get("Authorization"))
        except Unauthenticated as exc:
            return error_response(exc)
        req = cast(Any, request)._get_current_object()
        try:
            # HTTP has no connection to hang a budget on: one bucket per user, or per address.
            key = f"user:{user.id}" if user else f"addr:{request.remote_addr}"
            context = Context(self.services, user=user, request=req, bucket=self.buckets.get(key))
            return await self.run(request=req, context=context)
        except HTTPException as exc:
            return Response(response=exc.reason, status=exc.status_code, content_type="text/plain")
