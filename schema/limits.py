"""Query cost limits as graphql-core validation rules, shared by HTTP and the WebSocket endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from graphql import (
    ASTValidationRule,
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from graphql.validation import NoSchemaIntrospectionCustomRule
from graphql.validation.validation_context import ASTValidationContext
from strawberry.extensions import SchemaExtension

from switchboard.context import Context


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """Defaults generous for every query this API needs, tight for abuse."""

    max_depth: int = 10
    max_aliases: int = 15
    max_fields: int = 200
    max_tokens: int = 2000


def _fields(
    selection_set: SelectionSetNode | None, context: ASTValidationContext, depth: int, seen: frozenset[str]
) -> Iterator[tuple[FieldNode, int]]:
    """Every field node reachable from `selection_set`, with its depth; fragments expanded once."""
    if selection_set is None:
        return
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            yield selection, depth
            yield from _fields(selection.selection_set, context, depth + 1, seen)
        elif isinstance(selection, InlineFragmentNode):
            yield from _fields(selection.selection_set, context, depth, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = context.get_fragment(name)
            if fragment is not None and name not in seen:
                yield from _fields(fragment.selection_set, context, depth, seen | {name})


@cache  # one rule class per limits, not a new class for every operation
def limit_rule(limits: QueryLimits) -> type[ASTValidationRule]:
    """A rule refusing operations deeper, wider or more aliased than `limits`."""

    class OperationLimits(ASTValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            depth = fields = aliases = 0
            for field, level in _fields(node.selection_set, self.context, 1, frozenset()):
                fields += 1
                depth = max(depth, level)
                aliases += field.alias is not None
            for value, limit, what in (
                (depth, limits.max_depth, "deep"),
                (fields, limits.max_fields, "many fields"),
                (aliases, limits.max_aliases, "many aliases"),
            ):
                if value > limit:
                    self.report_error(
                        GraphQLError(
                            f"operation is too {what}: {value} > {limit}",
                            node,
                            extensions={"code": "BAD_USER_INPUT"},
                        )
                    )

    return OperationLimits


def validation_rules(limits: QueryLimits, *, introspection: bool) -> tuple[type[ASTValidationRule], ...]:
    rules: tuple[type[ASTValidationRule], ...] = (limit_rule(limits),)
    if not introspection:
        rules += (NoSchemaIntrospectionCustomRule,)
    return rules


class LimitQueries(SchemaExtension):
    """Adds the limit rules (and, where switched off, the no-introspection rule) to HTTP operations."""

    limits = QueryLimits()

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context.context
        introspection = not isinstance(context, Context) or context.services.settings.introspection
        self.execution_context.validation_rules = self.execution_context.validation_rules + validation_rules(
            self.limits, introspection=introspection
        )
        self.execution_context.parse_options["max_tokens"] = self.limits.max_tokens
        yield
