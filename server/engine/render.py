"""Render each event once per distinct (document, variables) and share the JSON (multiplexing).

Every subscriber of a group gets the same event. Running the selection set once per subscriber
(what a plain GraphQL subscription does) costs ~100 us each; here the first subscriber with a
given document and variables pays it and the rest reuse the encoded payload. Event types whose
fields read the session set `per_session = True` and are rendered per session instead.
"""

from __future__ import annotations

import inspect
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson
from graphql import (
    ArgumentNode,
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    Node,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    Visitor,
    execute,
    get_operation_ast,
    is_non_null_type,
    parse,
    print_ast,
    visit,
)

from switchboard.engine.api import GraphQLApi
from switchboard.engine.root_field import fragments_used, root_field
from switchboard.messages.envelope import Envelope
from switchboard.observability.stats import Stats
from switchboard.offload import OFF_LOOP_LENGTH, off_loop
from switchboard.query_cost import QueryLimits, admit
from switchboard.token_limit import check_token_limit

log = logging.getLogger(__name__)

_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class Prepared:
    """A parsed, validated document, and the first copy of its text (shared by every subscription
    with the same query, instead of one copy per socket)."""

    query: str
    document: DocumentNode
    errors: tuple[GraphQLError, ...] = ()
    _renders: dict[str | None, tuple[DocumentNode, frozenset[str]]] = field(default_factory=dict)
    _printed: dict[str | None, str] = field(default_factory=dict)

    def operation(self, name: str | None) -> OperationDefinitionNode | None:
        return get_operation_ast(self.document, name)

    def for_rendering(self, name: str | None, schema: GraphQLSchema) -> tuple[DocumentNode, frozenset[str]]:
        """The document events of operation `name` are rendered with, and the variables it uses.

        The root field's arguments (`groups`, `since`, `notes`) choose the events; they play no
        part in rendering one. graphql-core would coerce them again for every event (a `since`
        of 50 cursors costs 50 coercions per event, a literal list of 1900 groups ~3 ms), so
        they are left out whatever their form, and so are the variables only they used:
        subscriptions differing only in their groups or cursors then share one rendering."""
        found = self._renders.get(name)
        if found is None:
            found = self._renders[name] = _render_document(self.document, name, schema)
        return found

    def rendering_text(self, name: str | None, schema: GraphQLSchema) -> str:
        """The rendering document, printed: subscribers whose texts differ only in layout (a
        client that prints documents its own way) or in the arguments that choose events share
        one rendering per event."""
        found = self._printed.get(name)
        if found is None:
            found = self._printed[name] = print_ast(self.for_rendering(name, schema)[0])
        return found


def _render_document(
    document: DocumentNode, name: str | None, schema: GraphQLSchema
) -> tuple[DocumentNode, frozenset[str]]:
    operation = get_operation_ast(document, name)
    root = schema.subscription_type
    if operation is None or root is None:
        return document, frozenset()
    field_node = root_field(document, operation)
    definition = root.fields[field_node.name.value]

    def selecting(argument: ArgumentNode) -> bool:
        """The nullable arguments of the root field choose events, in any form (a variable, a
        literal): rendering never reads them."""
        arg = definition.args.get(argument.name.value)
        return arg is not None and not is_non_null_type(arg.type)

    stripped_field = FieldNode(
        alias=field_node.alias,
        name=field_node.name,
        arguments=tuple(a for a in field_node.arguments or () if not selecting(a)),
        directives=field_node.directives,
        selection_set=field_node.selection_set,
    )
    # The root field alone, however the document reached it (fragments, inline fragments),
    # with only the fragments its selection uses.
    selection_set = SelectionSetNode(selections=(stripped_field,))
    fragments = tuple(fragments_used(document, selection_set))
    body = OperationDefinitionNode(
        operation=operation.operation,
        name=operation.name,
        directives=operation.directives,
        variable_definitions=(),
        selection_set=selection_set,
    )
    used = _variables_in(DocumentNode(definitions=(body, *fragments)))
    definitions = tuple(d for d in operation.variable_definitions or () if d.variable.name.value in used)
    rendered = OperationDefinitionNode(
        operation=operation.operation,
        name=operation.name,
        directives=operation.directives,
        variable_definitions=definitions,
        selection_set=selection_set,
    )
    return DocumentNode(definitions=(rendered, *fragments)), frozenset(used)


def _variables_in(node: Node) -> set[str]:
    names: set[str] = set()

    class Collect(Visitor):
        def enter_variable(self, variable: VariableNode, *_: Any) -> None:
            names.add(variable.name.value)

    visit(node, Collect())
    return names


class DocumentCache:
    """Parse and validate each distinct query text once (LRU)."""

    def __init__(
        self,
        schema: GraphQLSchema,
        rules: tuple[type[ASTValidationRule], ...] = (),
        limits: QueryLimits | None = None,
        size: int = 512,
    ) -> None:
        self._schema = schema
        self._rules = rules
        self._limits = limits or QueryLimits()
        self._max_tokens = self._limits.max_tokens
        self._size = size
        self._items: OrderedDict[str, Prepared] = OrderedDict()

    async def prepare(self, query: str) -> Prepared:
        """The prepared document; a long one not seen before is parsed beside the loop."""
        found = self._items.get(query)
        if found is not None:
            self._items.move_to_end(query)
            return found
        try:
            check_token_limit(query, self._max_tokens)
        except GraphQLError as exc:
            return Prepared(query, DocumentNode(definitions=()), (exc,))  # not kept: not parsed
        if len(query) > OFF_LOOP_LENGTH:
            prepared = await off_loop(self._prepare, query)
        else:
            prepared = self._prepare(query)
        self._items[query] = prepared
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return prepared

    def _prepare(self, query: str) -> Prepared:
        try:
            document = parse(query, max_tokens=self._max_tokens)
        except GraphQLError as exc:
            prepared = Prepared(query, DocumentNode(definitions=()), (exc,))
        else:
            errors = admit(self._schema, document, self._limits, self._rules)
            prepared = Prepared(query, document, tuple(errors))
        return prepared


RECENT_EVENTS = 256
RECENT_CHARS = 8 << 20


class _Rendered:
    """One recent event: the object its fields resolve on, and its payload per distinct document."""

    __slots__ = ("chars", "payloads", "per_session", "root")

    def __init__(self, per_session: bool) -> None:
        self.root: Any = _UNSET
        self.per_session = per_session
        self.payloads: dict[object, str | None] = {}
        self.chars = 0


class Renderer:
    """Renders each event once per distinct document, for every session that gets it.

    Not only while an event fans out: the renderings of the last RECENT_EVENTS events (at most
    RECENT_CHARS of payload) are kept, by event id, because an event also reaches sessions one at
    a time, as a replay from the history or as a live event held while a subscription resumed. In
    a reconnect storm every session of a note replays the same events and holds the same JOINs:
    rendered once, not once per session."""

    def __init__(self, api: GraphQLApi, stats: Stats | None = None) -> None:
        self._api = api
        self._stats = stats if stats is not None else Stats()
        self._schema = api.graphql_schema
        self._recent: OrderedDict[str, _Rendered] = OrderedDict()
        self._chars = 0
        self.executions = 0

    def payload(
        self,
        message: Envelope,
        key: object,
        session_id: str,
        document: DocumentNode,
        variables: dict[str, Any],
        operation_name: str | None,
        context: Any,
    ) -> str | None:
        """The JSON `payload` of a next/data message for this subscription, None if it can't render."""
        entry = self._recent.get(message.id)
        if entry is None:
            renderer = self._api.event_types.get(message.type)
            entry = self._recent[message.id] = _Rendered(bool(getattr(renderer, "per_session", False)))
            self._evict()
        if entry.per_session:
            key = (key, session_id)
        try:
            return entry.payloads[key]
        except KeyError:
            pass
        text = self._render(entry, message, document, variables, operation_name, context)
        entry.payloads[key] = text
        if text is not None:
            entry.chars += len(text)
            self._chars += len(text)
            if self._chars > RECENT_CHARS:
                self._evict()
        return text

    def _evict(self) -> None:
        """Forget the oldest events past the bounds (never the newest: it is being delivered)."""
        while len(self._recent) > 1 and (len(self._recent) > RECENT_EVENTS or self._chars > RECENT_CHARS):
            _, oldest = self._recent.popitem(last=False)
            self._chars -= oldest.chars

    def _render(
        self,
        entry: _Rendered,
        message: Envelope,
        document: DocumentNode,
        variables: dict[str, Any],
        operation_name: str | None,
        context: Any,
    ) -> str | None:
        if entry.root is _UNSET:
            renderer = self._api.event_types.get(message.type)
            try:
                entry.root = None if renderer is None else renderer.from_envelope(message)
            except Exception:
                log.exception("could not build a %r event from %s", message.type, message.id)
                entry.root = None
        if entry.root is None:
            return None
        self.executions += 1
        self._stats.renders += 1
        result = execute(
            self._schema,
            document,
            root_value=entry.root,
            context_value=context,
            variable_values=variables,
            operation_name=operation_name,
        )
        if inspect.isawaitable(result):
            # An event type with async field resolvers cannot be rendered in the delivery loop.
            close = getattr(result, "close", None)
            if close is not None:
                close()
            log.error("event type %r has async fields; event %s dropped", message.type, message.id)
            return None
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [self._api.format_error(e) for e in result.errors]
        return orjson.dumps(body).decode()
