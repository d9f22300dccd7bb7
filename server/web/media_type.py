"""`application/graphql-response+json`, the GraphQL-over-HTTP media type (Apollo Client 4 and
urql ask for it first): the same body, with status codes that say whether the request as a
whole failed. A document that does not parse or validate, or variables that do not coerce, is a
*request error*: 400 and no `data` entry. Anything that executed is 200, field errors included.
Clients that ask only for `application/json` keep getting 200 for everything, as before.
"""

from __future__ import annotations

from typing import Any

import orjson

GRAPHQL_RESPONSE = "application/graphql-response+json"


def wants_graphql_response(accept: str | None) -> bool:
    """Whether the Accept header names the media type (at any q but 0)."""
    for part in (accept or "").split(","):
        kind, *params = (p.strip() for p in part.split(";"))
        if kind.lower() == GRAPHQL_RESPONSE and not any(
            p.replace(" ", "") in ("q=0", "q=0.0") for p in params
        ):
            return True
    return False


def as_graphql_response(body: bytes) -> tuple[int, bytes]:
    """(status, body) of a JSON GraphQL response for a client that accepts the media type."""
    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 200, body
    if not isinstance(parsed, dict) or parsed.get("data") is not None or not parsed.get("errors"):
        return 200, body
    errors = parsed["errors"]
    if not all(isinstance(e, dict) and "path" not in e for e in errors):
        return 200, body  # a field error nulled the whole result: it executed
    return 400, orjson.dumps({k: v for k, v in parsed.items() if k != "data"})
