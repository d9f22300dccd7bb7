"""The query limits on Strawberry's side (HTTP): the token limit for the parse, the linear cost
check (switchboard.query_cost) before any other validation, and the extra rules."""

from __future__ import annotations

from collections.abc import Iterator

from graphql import ASTValidationRule
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import SchemaExtension

from switchboard.context import Context
from switchboard.query_cost import QueryLimits, cost_errors

__all__ = ["LimitQueries", "QueryLimits", "extra_rules"]


def extra_rules(*, introspection: bool) -> tuple[type[ASTValidationRule], ...]:
    """Rules beyond the specification's: no introspection where it is switched off."""
    return () if introspection else (NoSchemaIntrospectionCustomRule,)


class LimitQueries(SchemaExtension):
    """HTTP operations: the token limit for the parse, the cost check before any other
    validation (a document over the limits gets only its errors), and the extra rules."""

    limits = QueryLimits()

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context.context
        introspection = not isinstance(context, Context) or context.services.settings.introspection
        self.execution_context.validation_rules = self.execution_context.validation_rules + extra_rules(
            introspection=introspection
        )
        self.execution_context.parse_options["max_tokens"] = self.limits.max_tokens
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is not None and context.pre_execution_errors is None:
            errors = cost_errors(context.graphql_document, self.limits)
            if errors:  # set, they tell Strawberry and ParseBesideTheLoop not to validate
                context.pre_execution_errors = errors
        yield
