"""What the engine needs of a transport (in the spirit of centrifuge's Transport): where frames
go, how a result, an error and the end of an operation are framed, and how to end it all.

graphql-transport-ws and graphql-ws (switchboard.ws), GraphQL over SSE in both of graphql-sse's
modes and multipart (switchboard.streams) each implement it; nothing else of theirs is shared."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from switchboard.engine.plan import Multiplexed
from switchboard.engine.writer import FrameWriter

if TYPE_CHECKING:
    from switchboard.engine.peer import Peer
    from switchboard.engine.subscription import Subscription

Since = list[tuple[str, str]]


class Transport(Protocol):
    @property
    def writer(self) -> FrameWriter:
        """The bounded queue of this peer's frames (write-many: payloads are shared)."""
        ...

    @property
    def tracks_positions(self) -> bool:
        """Whether every subscription learns its groups' positions before going live (SSE ids)."""
        ...

    def subscription(self, peer: Peer, op_id: str, planned: Multiplexed, name: str | None) -> Subscription:
        """A multiplexed subscription framed for this transport."""
        ...

    async def positions(self, subscription: Subscription, since: Since) -> tuple[Since, Since]:
        """With `tracks_positions`: record where the subscription starts in each group; what to
        replay (`since`, and what the transport's own resume names), and the start positions to
        tell the client as ResumeEvents."""
        ...

    def send_result(self, op_id: str, payload: dict[str, Any]) -> None: ...

    def send_error(self, op_id: str, errors: list[Any]) -> None:
        """The operation did not start, or failed: its errors, and it is over."""
        ...

    def send_complete(self, op_id: str) -> None:
        """The server ended the operation."""
        ...

    def stopped(self, op_id: str) -> None:
        """The client stopped the operation (graphql-ws answers with complete)."""
        ...

    def end(self, code: int, reason: str) -> None:
        """End the whole transport (a WebSocket close code; streams end with a comment)."""
        ...
