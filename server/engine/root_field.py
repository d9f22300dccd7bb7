"""The one root field of a subscription, whatever form the document gives it: written plainly,
aliased, inside an inline fragment or a fragment spread (at any depth). The engine serves one
field, always there: a directive deciding whether it is (@skip, @include) is refused."""

from __future__ import annotations

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

from switchboard.exceptions import BadUserInput


def root_field(document: DocumentNode, operation: OperationDefinitionNode) -> FieldNode:
    """The operation's one root field; BadUserInput if there is not exactly one, or a directive
    stands on the way to it."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    found: list[FieldNode] = []
    pending: list[SelectionSetNode] = [operation.selection_set]
    spread: set[str] = set()
    while pending:
        for selection in pending.pop().selections:
            if selection.directives:
                raise BadUserInput("a subscription's root field takes no directives (@skip, @include)")
            if isinstance(selection, FieldNode):
                found.append(selection)
            elif isinstance(selection, InlineFragmentNode):
                pending.append(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                if fragment is None or name in spread:
                    continue  # validation refuses both before planning
                if fragment.directives:
                    raise BadUserInput("a subscription's root field takes no directives (@skip, @include)")
                spread.add(name)
                pending.append(fragment.selection_set)
    if len(found) != 1:
        raise BadUserInput("a subscription selects exactly one root field")
    return found[0]


def fragments_used(
    document: DocumentNode, selection_set: SelectionSetNode | None
) -> list[FragmentDefinitionNode]:
    """The fragment definitions `selection_set` spreads, directly or through others."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    used: dict[str, FragmentDefinitionNode] = {}
    pending = [selection_set]
    while pending:
        current = pending.pop()
        for selection in current.selections if current is not None else ():
            if isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in fragments and name not in used:
                    used[name] = fragments[name]
                    pending.append(fragments[name].selection_set)
            elif isinstance(selection, FieldNode | InlineFragmentNode):
                pending.append(selection.selection_set)
    return [d for d in document.definitions if isinstance(d, FragmentDefinitionNode) and d.name.value in used]
