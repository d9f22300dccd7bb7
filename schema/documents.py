"""Parsing and validating HTTP operations (Strawberry's side): the documents apps send again and
again are parsed once (a bounded LRU whose key includes the token limit), and long ones are
parsed and validated beside the event loop (switchboard.offload), so one client's large document
never stops every other session's delivery while it is read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import lru_cache

from graphql import parse, validate
from strawberry.extensions import SchemaExtension

from switchboard.compat.strawberry_schema import graphql_schema_of
from switchboard.offload import OFF_LOOP_LENGTH, off_loop
from switchboard.token_limit import check_token_limit

_cached_parse = lru_cache(maxsize=512)(parse)


class ParseBesideTheLoop(SchemaExtension):
    """Replaces Strawberry's ParserCache, and its validation for long documents."""

    async def on_parse(self) -> AsyncIterator[None]:
        context = self.execution_context
        query, options = context.query or "", context.parse_options
        if context.graphql_document is None and query:
            check_token_limit(query, options.get("max_tokens"))  # refused before any parse
            if len(query) > OFF_LOOP_LENGTH:
                context.graphql_document = await off_loop(parse, query, **options)
            else:
                context.graphql_document = _cached_parse(query, **options)
        yield

    async def on_validate(self) -> AsyncIterator[None]:
        context = self.execution_context
        document = context.graphql_document
        long = len(context.query or "") > OFF_LOOP_LENGTH
        if document is not None and long and context.pre_execution_errors is None:
            # Setting the errors (even none) tells Strawberry validation has been done.
            schema = graphql_schema_of(context.schema)
            context.pre_execution_errors = await off_loop(
                validate, schema, document, context.validation_rules
            )
        yield
