"""Query cost limits, checked in time linear in the document before any other validation.

A fragment may be spread many times, and each spread of a fragment that spreads another
multiplies the work of a walk that expands fragments per path: a 944-byte document whose
fragments each spread the next twice costs 2^k field visits. Here each fragment is measured
once (memoised) and counted once per spread, so a document costs one visit per node whatever
its spreads multiply to; the counts themselves saturate, so they stay small numbers.

The check runs before graphql-core's rules (`admit`), and a document over a limit is refused
without them: no other rule ever walks a document this check did not bound. HTTP (Strawberry's
side, schema.limits) and the WebSocket and stream endpoints (ws.render) both call it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    Node,
    OperationDefinitionNode,
    SelectionSetNode,
    specified_rules,
    validate,
)

_CAP = 1 << 30
"""Counts stop growing here: far past any limit, and still a small integer."""


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """Defaults generous for every query this API needs, tight for abuse."""

    max_depth: int = 10
    max_aliases: int = 15
    max_fields: int = 200
    max_tokens: int = 2000


@dataclass(frozen=True, slots=True)
class Cost:
    """What a selection set expands to: fields and aliases with every spread counted, and the
    deepest field's level (a selection set's own fields are at level 1)."""

    fields: int = 0
    aliases: int = 0
    depth: int = 0


_NOTHING = Cost()


class _Meter:
    """Measures selection sets of one document, each fragment once."""

    def __init__(self, document: DocumentNode, max_depth: int) -> None:
        self._fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self._costs: dict[str, Cost] = {}
        # A field nested deeper than this is over the limit already: the walk stops there, so
        # its recursion is bounded by the limit, not by the document.
        self._cutoff = max_depth + 1
        for name in self._order():
            self._costs[name] = self.measure(self._fragments[name].selection_set)

    def fragment(self, name: str) -> Cost:
        return self._costs.get(name, _NOTHING)

    def measure(self, selection_set: SelectionSetNode | None, level: int = 1) -> Cost:
        fields = aliases = depth = 0
        for selection in selection_set.selections if selection_set is not None else ():
            if isinstance(selection, FieldNode):
                below = self.measure(selection.selection_set, level + 1) if level < self._cutoff else _NOTHING
                fields += 1 + below.fields
                aliases += (selection.alias is not None) + below.aliases
                depth = max(depth, 1 + below.depth)
                continue
            if isinstance(selection, InlineFragmentNode):
                inner = self.measure(selection.selection_set, level)
            elif isinstance(selection, FragmentSpreadNode):
                inner = self._costs.get(selection.name.value, _NOTHING)
            else:
                continue
            fields += inner.fields
            aliases += inner.aliases
            depth = max(depth, inner.depth)
        return Cost(min(fields, _CAP), min(aliases, _CAP), min(depth, _CAP))

    def _order(self) -> list[str]:
        """Fragment names, each after every fragment it spreads (a spread that closes a cycle,
        which graphql-core's NoFragmentCycles refuses, counts as nothing). Iterative: a chain of
        spreads is as long as the document allows, past the interpreter's recursion limit."""
        order: list[str] = []
        state: dict[str, bool] = {}  # False while being visited, True once ordered
        for root in self._fragments:
            if root in state:
                continue
            state[root] = False
            stack: list[tuple[str, Iterator[str]]] = [(root, self._spreads(root))]
            while stack:
                name, spreads = stack[-1]
                following = next((s for s in spreads if s in self._fragments and s not in state), None)
                if following is None:
                    stack.pop()
                    state[name] = True
                    order.append(name)
                else:
                    state[following] = False
                    stack.append((following, self._spreads(following)))
        return order

    def _spreads(self, name: str) -> Iterator[str]:
        """The fragments `name` spreads, down to the depth cutoff."""
        pending: list[tuple[SelectionSetNode | None, int]] = [(self._fragments[name].selection_set, 1)]
        while pending:
            selection_set, level = pending.pop()
            for selection in selection_set.selections if selection_set is not None else ():
                if isinstance(selection, FragmentSpreadNode):
                    yield selection.name.value
                elif isinstance(selection, FieldNode):
                    if level < self._cutoff:
                        pending.append((selection.selection_set, level + 1))
                elif isinstance(selection, InlineFragmentNode):
                    pending.append((selection.selection_set, level))


def cost_errors(document: DocumentNode, limits: QueryLimits) -> list[GraphQLError]:
    """Why the document is over `limits`: the errors of its first operation over them, or else
    of its first fragment over them (none for a document within them).

    Fragments are checked too, used or not, since graphql-core's rules walk every definition.
    One definition's errors at most: each error finds its location in the whole text."""
    meter = _Meter(document, limits.max_depth)
    definitions = sorted(document.definitions, key=lambda d: isinstance(d, FragmentDefinitionNode))
    for definition in definitions:
        if isinstance(definition, OperationDefinitionNode):
            errors = _over(definition, "operation", meter.measure(definition.selection_set), limits)
        elif isinstance(definition, FragmentDefinitionNode):
            name = definition.name.value
            errors = _over(definition, f"fragment {name}", meter.fragment(name), limits)
        else:
            continue
        if errors:
            return errors
    return []


def _over(node: Node, what: str, cost: Cost, limits: QueryLimits) -> list[GraphQLError]:
    return [
        GraphQLError(
            f"{what} is too {too}: {value if value < _CAP else f'over {_CAP}'} > {limit}",
            node,
            extensions={"code": "BAD_USER_INPUT"},
        )
        for value, limit, too in (
            (cost.depth, limits.max_depth, "deep"),
            (cost.fields, limits.max_fields, "many fields"),
            (cost.aliases, limits.max_aliases, "many aliases"),
        )
        if value > limit
    ]


def admit(
    schema: GraphQLSchema,
    document: DocumentNode,
    limits: QueryLimits,
    rules: Sequence[type[ASTValidationRule]] = (),
) -> list[GraphQLError]:
    """Validate `document`: its cost first, then (only if within `limits`) the specification's
    rules and `rules`."""
    errors = cost_errors(document, limits)
    if errors:
        return errors
    return validate(schema, document, (*specified_rules, *rules))
