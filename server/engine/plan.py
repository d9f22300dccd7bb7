"""Planning an operation: run it once (a query or mutation), or multiplex it (a subscription).

A subscription, in any form (plain, aliased, through fragments), is never run per subscriber:
it becomes a Listener of the session whose events are rendered once per distinct (rendering
document, variables) for every subscriber of the process. Its root field's arguments choose the
events; they are checked here (lengths capped whether variables or literals) and play no part
in rendering (engine.render.Prepared.for_rendering).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from graphql import DocumentNode, GraphQLError, OperationType
from graphql.execution.values import get_argument_values, get_variable_values

from switchboard.engine.api import GraphQLApi
from switchboard.engine.errors import coded
from switchboard.engine.render import Prepared
from switchboard.engine.root_field import root_field
from switchboard.exceptions import SwitchboardError
from switchboard.layers.history import parse_position
from switchboard.messages.filters import EventFilter
from switchboard.messages.groups import note_group, require_valid_group_name


@dataclass(frozen=True, slots=True)
class Execute:
    """A query or mutation: one result, then complete."""


@dataclass(frozen=True, slots=True)
class Multiplexed:
    """A subscription the session's events feed, rendered once per distinct `key`."""

    filter: EventFilter
    document: DocumentNode  # the one to render events with (Prepared.for_rendering)
    variables: dict[str, Any]  # those rendering uses
    key: tuple[str, str | None, str]
    since: list[tuple[str, str]]  # (group, cursor) to replay first
    notes: list[str]  # note ids to hold while the subscription runs


Plan = Execute | Multiplexed


def plan(
    api: GraphQLApi,
    prepared: Prepared,
    variables: dict[str, Any],
    name: str | None,
    max_groups: int = 64,
    max_variables_bytes: int = 4096,
) -> Plan | list[Any]:
    """How to run one operation, or the errors that refuse it (formatted for the client)."""
    if prepared.errors:
        return [api.format_error(e) for e in prepared.errors]
    operation = prepared.operation(name)
    if operation is None:
        return [coded("no operation with that name in the document", "GRAPHQL_VALIDATION_FAILED")]
    if operation.operation is not OperationType.SUBSCRIPTION:
        return Execute()
    # A subscription keeps its variables as long as it runs, and every event is rendered with them.
    encoded = orjson.dumps(variables, option=orjson.OPT_SORT_KEYS).decode()
    if len(encoded) > max_variables_bytes:
        return [
            coded(f"a subscription's variables take at most {max_variables_bytes} bytes", "BAD_USER_INPUT")
        ]
    try:
        field = root_field(prepared.document, operation)
    except SwitchboardError as exc:
        return [coded(str(exc), exc.code)]
    builder = api.stream_filters.get(field.name.value)
    schema = api.graphql_schema
    subscription_type = schema.subscription_type
    if builder is None or subscription_type is None:
        return [coded(f"the subscription field {field.name.value!r} is not served", "BAD_USER_INPUT")]
    coerced = get_variable_values(schema, operation.variable_definitions or (), variables)
    if isinstance(coerced, list):
        return [api.format_error(e) for e in coerced]
    try:
        args = get_argument_values(subscription_type.fields[field.name.value], field, coerced)
        event_filter = builder(args, api.event_types)
    except GraphQLError as exc:
        return [api.format_error(exc)]
    except SwitchboardError as exc:
        return [coded(str(exc), exc.code)]
    # Rendered without the arguments that only choose events (Prepared.for_rendering): the key
    # holds only the variables rendering uses. decode(): orjson's bytes keep a 4 KiB buffer
    # however short, and the key lives as long as the subscription.
    document, used = prepared.for_rendering(name, schema)
    rendering = {k: v for k, v in variables.items() if k in used}
    key = (
        prepared.rendering_text(name, schema),
        name,
        orjson.dumps(rendering, option=orjson.OPT_SORT_KEYS).decode(),
    )
    since = [(_field(s, "group"), _field(s, "cursor")) for s in (args.get("since") or ())]
    notes = [str(note) for note in dict.fromkeys(args.get("notes") or ())]
    if max(len(since), len(notes), len(args.get("groups") or ())) > max_groups:
        # No session is in more groups than this: a longer list is only work for the server.
        return [coded(f"groups, since and notes take at most {max_groups} entries", "BAD_USER_INPUT")]
    try:
        for note in notes:
            note_group(note)
        for group, cursor in since:
            require_valid_group_name(group)
            parse_position(cursor)
    except SwitchboardError as exc:
        return [coded(str(exc), exc.code)]
    return Multiplexed(event_filter, document, rendering, key, since, notes)


def _field(value: Any, name: str) -> str:
    """A field of a coerced input object (Strawberry builds its class; plain graphql-core a dict)."""
    return str(value[name] if isinstance(value, dict) else getattr(value, name))


def result_payload(result: Any) -> dict[str, Any]:
    """An execution result as every transport carries it: data, and errors when there are any."""
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [e.formatted for e in result.errors]
    return payload


async def run_once(
    api: GraphQLApi,
    context: Any,
    query: str,
    variables: dict[str, Any],
    name: str | None,
) -> dict[str, Any]:
    """Run a query or mutation; its result's payload."""
    result = await api.execute(query, variable_values=variables, context_value=context, operation_name=name)
    return result_payload(result)
