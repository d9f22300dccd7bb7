"""The GraphQL schema: Strawberry types, queries, mutations and subscriptions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import strawberry
from graphql import ASTValidationRule, GraphQLError, GraphQLSchema
from graphql.error import GraphQLFormattedError

from switchboard.compat.strawberry_schema import graphql_schema_of
from switchboard.schema.documents import ParseBesideTheLoop
from switchboard.schema.errors import ErrorCodes, coded
from switchboard.schema.events import DEFAULT_EVENT_TYPES, EventType
from switchboard.schema.limits import LimitQueries, QueryLimits, extra_rules
from switchboard.schema.mutation import Mutation
from switchboard.schema.query import Query
from switchboard.schema.subscription import STREAM_FILTERS, FilterBuilder, make_subscription

__all__ = ["DEFAULT_EVENT_TYPES", "EventType", "QueryLimits", "SwitchboardSchema", "build_schema", "schema"]


class SwitchboardSchema(strawberry.Schema):
    """The Strawberry schema plus what the WebSocket endpoint needs to render events itself."""

    def __init__(self, event_types: Mapping[str, type[EventType]], limits: QueryLimits) -> None:
        limiter = type("LimitQueries", (LimitQueries,), {"limits": limits})
        super().__init__(
            query=Query,
            mutation=Mutation,
            subscription=make_subscription(event_types),
            # Parse each distinct short document once, long ones beside the event loop.
            # Not Strawberry's ValidationCache: with it, RSS grew by 10% in 3200 WebSocket
            # connect/openNote/disconnect cycles (C-level memory, not Python objects).
            extensions=[limiter, ParseBesideTheLoop, ErrorCodes],
        )
        self.event_types: Mapping[str, type[EventType]] = dict(event_types)
        self.stream_filters: Mapping[str, FilterBuilder] = STREAM_FILTERS
        self.limits = limits

    @property
    def graphql_schema(self) -> GraphQLSchema:
        """The graphql-core schema the WebSocket endpoint validates and executes with."""
        return graphql_schema_of(self)

    def validation_rules(self, *, introspection: bool) -> tuple[type[ASTValidationRule], ...]:
        """Rules beyond the specification's, for the WebSocket endpoint's own validation."""
        return extra_rules(introspection=introspection)

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        # Strawberry logs every error with a traceback; refusals are expected, and ErrorCodes
        # already logs each unexpected error once, with the id its client gets.
        return None

    def format_error(self, error: GraphQLError) -> GraphQLFormattedError:
        """An error as clients see it: with `extensions.code`, unexpected ones masked."""
        return coded(error).formatted


def build_schema(
    event_types: Mapping[str, type[EventType]] = DEFAULT_EVENT_TYPES, limits: QueryLimits | None = None
) -> SwitchboardSchema:
    """The schema, with one `Event` union member per entry of `event_types`."""
    return SwitchboardSchema(event_types, limits or QueryLimits())


schema = build_schema()
