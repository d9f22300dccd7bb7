"""/graphql over HTTP: Strawberry's Quart view, authenticated by bearer token."""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from cross_web import HTTPException
from quart import Request, Response, request
from strawberry.quart.views import GraphQLView
from strawberry.schema.base import BaseSchema

from switchboard.compat.strawberry_http import RefuseSubscriptions
from switchboard.context import Context
from switchboard.exceptions import BadRequest, RateLimited, SwitchboardError, Unauthenticated, Unavailable
from switchboard.schema.errors import coded, count
from switchboard.security.handshake import Handshake
from switchboard.services import Services
from switchboard.web.media_type import GRAPHQL_RESPONSE, as_graphql_response, wants_graphql_response

log = logging.getLogger(__name__)


STATIC = Path(__file__).parent / "static"


@cache
def offline_graphiql() -> str | None:
    """Our GraphiQL page, whose scripts are served from /static/vendor; None if those are missing."""
    if not (STATIC / "vendor" / "graphiql.min.js").exists():
        return None
    return (STATIC / "graphiql.html").read_text()


def error_response(error: SwitchboardError, status: int = 200) -> Response:
    """A GraphQL-shaped error body carrying the error's code."""
    body = {"data": None, "errors": [{"message": str(error), "extensions": {"code": error.code}}]}
    return Response(orjson.dumps(body), status=status, content_type="application/json")


class SwitchboardView(RefuseSubscriptions, GraphQLView[Context, None]):
    """Queries and mutations over HTTP; WebSockets are served by switchboard.ws."""

    def __init__(self, schema: BaseSchema, services: Services, **kwargs: Any) -> None:
        super().__init__(schema, graphql_ide="graphiql" if services.settings.graphiql else None, **kwargs)
        self.services = services
        limits = getattr(schema, "limits", None)  # a SwitchboardSchema's query limits
        self.max_tokens = getattr(limits, "max_tokens", None)

    async def render_graphql_ide(self, request: Request) -> Response:
        page = offline_graphiql()
        if page is None:
            log.warning("GraphiQL assets missing (run `make assets`): the page loads them from a CDN")
            return await super().render_graphql_ide(request)
        return Response(page, content_type="text/html; charset=utf-8")

    async def process_result(self, request: Request, result: Any) -> Any:
        # Errors found before execution (a document that does not parse, most of all) reach the
        # view without passing the schema's ErrorCodes extension: give them their code here, so
        # every error over HTTP has one, as over the WebSocket.
        if result.errors:
            stats = self.services.stats
            result.errors = [
                e if (e.extensions or {}).get("code") else count(stats, coded(e)) for e in result.errors
            ]
        return await super().process_result(request, result)

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    def decode_json(self, data: str | bytes) -> object:
        return orjson.loads(data)

    async def dispatch_request(self, **kwargs: object) -> Any:
        # From the raw headers: every Cookie header of the request, joined as one.
        handshake = Handshake.from_asgi(request.scope.get("headers"), None, request.remote_addr, "http")
        try:
            user = await self.services.authenticator.authenticate(handshake)
        except Unauthenticated as exc:
            return error_response(exc)
        except Unavailable as exc:
            log.warning("refused an HTTP request: %s", exc)
            return error_response(Unavailable("authentication unavailable: try again later"), 503)
        mutations, operations = self.services.buckets_of(user, request.remote_addr)
        if (request.method == "POST" or "query" in request.args) and not operations.take():
            return error_response(RateLimited("too many operations: slow down"))
        try:
            context = Context(self.services, user=user, request=request, bucket=mutations)
            response = await self.run(request=request, context=context)
        except HTTPException as exc:  # Strawberry's refusals of a request: JSON with a code too
            response = error_response(BadRequest(exc.reason), exc.status_code)
            if exc.status_code == 405:
                response.headers["Allow"] = "POST"
            return response
        if wants_graphql_response(request.headers.get("Accept")) and response.mimetype == "application/json":
            status, body = as_graphql_response(await response.get_data(as_text=False))
            response = Response(body, status=status, content_type=GRAPHQL_RESPONSE, headers=response.headers)
            response.headers["Content-Type"] = GRAPHQL_RESPONSE
        return response
