"""Reading a streaming request: which transport the client accepts, its body (bounded), and the
GraphQL parameters of a GET or POST."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs

import orjson

from switchboard.engine.asgi import Receive, Scope
from switchboard.exceptions import BadUserInput, PayloadTooLarge

Transport = Literal["sse", "multipart", "json"]
TOKEN_HEADER = "x-graphql-event-stream-token"
_KINDS: dict[str, Transport] = {
    "text/event-stream": "sse",
    "multipart/mixed": "multipart",
    "application/graphql-response+json": "json",
    "application/json": "json",
    "application/*": "json",
    "*/*": "json",
}


def negotiate(accept: str | None) -> Transport:
    """The transport the Accept header prefers (by q, then by order): a client that lists JSON
    first (urql's queries) gets JSON even though it also accepts streams."""
    ranked: list[tuple[float, int, Transport]] = []
    for index, part in enumerate((accept or "").split(",")):
        kind, *params = (p.strip() for p in part.split(";"))
        transport = _KINDS.get(kind.lower())
        if transport is None:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            ranked.append((-q, index, transport))
    return min(ranked)[2] if ranked else "json"


def headers_of(scope: Scope) -> dict[str, str]:
    """The request's headers, names lower case (repeated ones joined with a comma)."""
    headers: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def query_params(scope: Scope) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, or PayloadTooLarge as soon as it passes `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadUserInput("the client went away while sending its request")
        body = message.get("body", b"")
        size += len(body)
        if size > limit:
            raise PayloadTooLarge(f"request body larger than {limit} bytes")
        chunks.append(body)
        if not message.get("more_body", False):
            return b"".join(chunks)


@dataclass(frozen=True, slots=True)
class GraphQLParams:
    query: str
    variables: dict[str, Any] = field(default_factory=dict)
    operation_name: str | None = None
    extensions: dict[str, Any] = field(default_factory=dict)


def params_of(method: str, query: dict[str, str], body: bytes) -> GraphQLParams:
    """The operation of a POST's JSON body or a GET's query string; BadUserInput otherwise."""
    raw: Any
    if method == "POST":
        try:
            raw = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadUserInput("the request body is not JSON") from None
    else:
        raw = dict[str, Any](query)
        for param in ("variables", "extensions"):
            if raw.get(param):
                try:
                    raw[param] = orjson.loads(raw[param])
                except orjson.JSONDecodeError:
                    raise BadUserInput(f"the {param} parameter is not JSON") from None
    if not isinstance(raw, dict):
        raise BadUserInput("the request must be a JSON object")
    text, variables = raw.get("query"), raw.get("variables") or {}
    name, extensions = raw.get("operationName") or None, raw.get("extensions") or {}
    if not isinstance(text, str) or not text:
        raise BadUserInput("query must be a non-empty string")
    if not isinstance(variables, dict) or not isinstance(extensions, dict):
        raise BadUserInput("variables and extensions must be objects")
    if name is not None and not isinstance(name, str):
        raise BadUserInput("operationName must be a string")
    return GraphQLParams(text, variables, name, extensions)
