"""The graphql-core schema inside a Strawberry schema.

The WebSocket endpoint validates and executes documents with graphql-core itself (once per
distinct document, not per subscriber), so it needs the `GraphQLSchema` Strawberry built.
Strawberry keeps it as `Schema._schema` and offers no public accessor (tested: 0.330-0.341).
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLSchema


def graphql_schema_of(schema: Any) -> GraphQLSchema:
    """The graphql-core schema of a `strawberry.Schema`; TypeError if it has none."""
    inner = getattr(schema, "_schema", None)
    if not isinstance(inner, GraphQLSchema):
        raise TypeError(f"{type(schema).__name__} holds no graphql-core schema at `_schema`")
    return inner
