"""What the WebSocket endpoint needs of the GraphQL schema (schema.SwitchboardSchema provides it)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, Protocol

from graphql import ASTValidationRule, GraphQLError, GraphQLSchema
from graphql.error import GraphQLFormattedError

from switchboard.messages.envelope import Envelope
from switchboard.messages.filters import EventFilter


class EventRenderer(Protocol):
    """A GraphQL object type built from an envelope."""

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> object: ...


class GraphQLApi(Protocol):
    event_types: Mapping[str, type[EventRenderer]]
    stream_filters: Mapping[str, Callable[[Mapping[str, Any], Collection[str]], EventFilter]]

    @property
    def graphql_schema(self) -> GraphQLSchema: ...

    @property
    def limits(self) -> Any: ...

    def format_error(self, error: GraphQLError) -> GraphQLFormattedError: ...

    def validation_rules(self, *, introspection: bool) -> tuple[type[ASTValidationRule], ...]: ...

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
    ) -> Any: ...
