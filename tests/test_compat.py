"""Every place Switchboard reaches inside another library (switchboard/compat/) has a test here
that fails loudly when an upgrade of that library takes away what it relies on."""

from __future__ import annotations

import asyncio
import inspect
from functools import partial

import pytest
from graphql import GraphQLSchema, OperationType
from strawberry.http.async_base_view import AsyncBaseHTTPView

from switchboard.compat.eager_start import start_eagerly
from switchboard.compat.strawberry_http import RefuseSubscriptions, operation_type
from switchboard.compat.strawberry_schema import graphql_schema_of
from switchboard.compat.ws_extensions import MODULES, use_extension
from switchboard.schema import build_schema
from switchboard.web.view import SwitchboardView
from switchboard.ws.deflate import Declined, SharedCompressor, SharedDeflate


def test_strawberry_keeps_the_graphql_core_schema_at_underscore_schema() -> None:
    schema = build_schema()
    inner = graphql_schema_of(schema)
    assert isinstance(inner, GraphQLSchema)
    assert inner.subscription_type is not None and "events" in inner.subscription_type.fields
    assert schema.graphql_schema is inner
    with pytest.raises(TypeError):
        graphql_schema_of(object())


async def test_strawberry_http_view_still_has_the_execute_operation_we_override() -> None:
    parameters = list(inspect.signature(AsyncBaseHTTPView.execute_operation).parameters)
    assert parameters == [
        "self",
        "request",
        "request_adapter",
        "request_data",
        "context",
        "root_value",
        "sub_response",
    ], "Strawberry changed execute_operation: update switchboard/compat/strawberry_http.py"
    assert SwitchboardView.__mro__.index(RefuseSubscriptions) < SwitchboardView.__mro__.index(
        AsyncBaseHTTPView
    )
    assert await operation_type("subscription { events { __typename } }", None) is OperationType.SUBSCRIPTION
    assert await operation_type("mutation M { a } query Q { b }", "M") is OperationType.MUTATION
    assert await operation_type("{ me { id } }", None) is OperationType.QUERY
    assert await operation_type("subscription {", None) is None  # Strawberry reports the syntax error


async def test_asyncio_futures_still_carry_the_blocking_flag_eager_starts_clear() -> None:
    future = asyncio.get_running_loop().create_future()
    assert hasattr(future, "_asyncio_future_blocking"), "asyncio changed: see compat/eager_start.py"

    async def waits() -> None:
        await future

    task = start_eagerly(waits(), "compat")
    assert task is not None and not task.done()
    future.set_result(None)
    await asyncio.wait_for(task, 1)

    cancelled = asyncio.get_running_loop().create_future()
    seen: list[str] = []

    async def cancellable() -> None:
        try:
            await cancelled
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    task = start_eagerly(cancellable(), "compat-cancel")
    assert task is not None
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert seen == ["cancelled"] and cancelled.cancelled()


def test_hypercorn_and_uvicorn_build_permessage_deflate_through_the_name_we_replace() -> None:
    import hypercorn.protocol.ws_stream as hypercorn_ws
    import uvicorn.protocols.websockets.wsproto_impl as uvicorn_ws

    assert "[PerMessageDeflate()]" in inspect.getsource(hypercorn_ws.Handshake.accept), (
        "hypercorn changed how it builds its extensions: see switchboard/compat/ws_extensions.py"
    )
    assert "PerMessageDeflate()" in inspect.getsource(uvicorn_ws.WSProtocol), (
        "uvicorn changed how it builds its extensions: see switchboard/compat/ws_extensions.py"
    )
    originals = hypercorn_ws.PerMessageDeflate, uvicorn_ws.PerMessageDeflate
    offer = [(b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits")]
    try:
        assert use_extension(Declined) == list(MODULES)
        _, headers, _ = hypercorn_ws.Handshake(offer, "1.1").accept(None, [])
        assert b"sec-websocket-extensions" not in dict(headers)

        use_extension(partial(SharedDeflate, SharedCompressor(), 256, 65536))
        _, headers, _ = hypercorn_ws.Handshake(offer, "1.1").accept(None, [])
        assert dict(headers)[b"sec-websocket-extensions"] == (
            b"permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        )
    finally:
        hypercorn_ws.PerMessageDeflate, uvicorn_ws.PerMessageDeflate = originals


def test_wsproto_reads_every_frame_header_where_the_message_limit_looks() -> None:
    """compat/ws_frame_limit.py: a server connection refuses a message from its header (1009, as
    if the peer had closed), its payload never read; one at the limit passes."""
    import struct

    from wsproto.connection import Connection, ConnectionState, ConnectionType
    from wsproto.events import CloseConnection, TextMessage

    from switchboard.compat.ws_frame_limit import limit_messages

    limit_messages(1000)
    over = Connection(ConnectionType.SERVER)
    over.receive_data(struct.pack("!BBQ", 0x81, 0x80 | 127, 300 << 20) + b"mask" + b"\0" * 4096)
    events = list(over.events())
    assert [(type(e), getattr(e, "code", None)) for e in events] == [(CloseConnection, 1009)]
    assert over.state is ConnectionState.REMOTE_CLOSING
    fragments = Connection(ConnectionType.SERVER)
    first = struct.pack("!BBH", 0x01, 0x80 | 126, 600) + b"\0\0\0\0" + b"x" * 600
    fragments.receive_data(first + struct.pack("!BBH", 0x80, 0x80 | 126, 600) + b"\0\0\0\0")
    assert [type(e) for e in fragments.events()] == [TextMessage, CloseConnection]
    bad = Connection(ConnectionType.SERVER)  # RSV1 without the extension: a protocol error
    bad.receive_data(struct.pack("!BB", 0xC1, 0x80 | 1) + b"\0\0\0\0x")
    assert [getattr(e, "code", None) for e in bad.events()] == [1002]
    assert bad.state is ConnectionState.REMOTE_CLOSING  # so the server answers with the close frame
    at_limit = Connection(ConnectionType.SERVER)
    at_limit.receive_data(struct.pack("!BBH", 0x81, 0x80 | 126, 1000) + b"\0\0\0\0" + b"y" * 1000)
    (message,) = list(at_limit.events())
    assert isinstance(message, TextMessage) and len(message.data) == 1000


def test_hypercorn_still_serves_each_connection_with_the_tcp_server_the_edge_builds() -> None:
    """The edge hands HTTP connections to hypercorn's TCPServer as hypercorn's own worker_serve
    builds it (compat/hypercorn_connection.py); uvicorn takes the edge's WebSocket protocol as a
    class in place of an implementation's name."""
    import hypercorn.asyncio.run as hypercorn_run
    import uvicorn

    from switchboard.compat.hypercorn_connection import check

    check()
    built = "TCPServer(app, loop, config, context, lifespan_state, reader, writer)"
    assert built in inspect.getsource(hypercorn_run.worker_serve), (
        "hypercorn builds its connections differently: see switchboard/compat/hypercorn_connection.py"
    )
    config = uvicorn.Config(app=None, ws=asyncio.Protocol)
    config.load()
    assert config.ws_protocol_class is asyncio.Protocol
