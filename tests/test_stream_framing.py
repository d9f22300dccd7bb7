"""The pure parts of the HTTP streams: which transport an Accept header asks for, how SSE ids
carry a stream's positions, and each transport's framing."""

from __future__ import annotations

import orjson
import pytest

from switchboard.exceptions import BadUserInput
from switchboard.messages.envelope import Envelope
from switchboard.messages.events import NOTIFY, RESUME
from switchboard.streams.event_ids import EventIds, parse_last_event_id
from switchboard.streams.framing import MULTIPART, SSE, SSE_SINGLE
from switchboard.streams.requests import negotiate


@pytest.mark.parametrize(
    ("accept", "transport"),
    [
        ("text/event-stream", "sse"),  # EventSource, graphql-sse
        ("text/event-stream, multipart/mixed", "sse"),  # urql's subscriptions
        # urql's queries list streams too, after JSON: they stay JSON
        (
            "application/graphql-response+json, application/graphql+json, application/json, "
            "text/event-stream, multipart/mixed",
            "json",
        ),
        ("multipart/mixed;boundary=graphql;subscriptionSpec=1.0,application/json", "multipart"),  # Apollo
        ("application/json;q=0.5, text/event-stream", "sse"),
        ("text/event-stream;q=0, application/json", "json"),
        ("*/*", "json"),
        ("", "json"),
        (None, "json"),
    ],
)
def test_the_accept_header_picks_the_transport(accept: str | None, transport: str) -> None:
    assert negotiate(accept) == transport


def notify(group: str, epoch: str, offset: int) -> Envelope:
    return Envelope(type=NOTIFY, group=group, fields={"message": "m"}).at(epoch, offset)


def test_an_sse_id_lists_the_streams_position_in_each_group_its_own_first() -> None:
    ids = EventIds({"all": "e1:4", "user_1": "-"})
    assert ids.advance(notify("all", "e1", 5)) == "all=e1:5 user_1=-"
    assert ids.advance(notify("user_1", "e2", 1)) == "user_1=e2:1 all=e1:5"
    assert ids.advance(notify("all", "e1", 3)) == "all=e1:5 user_1=e2:1"  # never backwards
    assert ids.advance(notify("all", "e9", 1)) == "all=e9:1 user_1=e2:1"  # a new history
    assert parse_last_event_id("all=e9:1 user_1=e2:1", 10) == {"all": "e9:1", "user_1": "e2:1"}


def test_a_resume_moves_the_position_only_when_it_did_not_recover() -> None:
    ids = EventIds({"all": "e1:4"})
    recovered = Envelope(type=RESUME, group="all", fields={"recovered": True, "cursor": "e1:9"})
    assert ids.advance(recovered) == "all=e1:4"  # the replayed events move it, one by one
    lost = Envelope(type=RESUME, group="all", fields={"recovered": False, "cursor": "e2:7"})
    assert ids.advance(lost) == "all=e2:7"


@pytest.mark.parametrize("text", ["nonsense", "all=", "all=e1:x", "bad group=e1:1", "a=e:1 " * 11])
def test_a_last_event_id_that_is_not_ours_is_bad_input(text: str) -> None:
    with pytest.raises(BadUserInput):
        parse_last_event_id(text, 10)


def test_each_transport_frames_a_result_as_its_clients_parse_it() -> None:
    payload = orjson.dumps({"data": {"x": 1}}).decode()
    assert SSE.result("", payload, "all=e:1") == f"event: next\nid: all=e:1\ndata: {payload}\n\n"
    assert SSE_SINGLE.result("op1", payload) == f'event: next\ndata: {{"id":"op1","payload":{payload}}}\n\n'
    assert SSE_SINGLE.complete("op1") == 'event: complete\ndata: {"id":"op1"}\n\n'
    assert SSE.complete("") == "event: complete\ndata:\n\n"  # EventSource needs the data line
    part = MULTIPART.result("", payload)
    # Each part ends with the boundary, so that parsers see it as soon as it arrives.
    assert (
        part
        == f'\r\ncontent-type: application/json; charset=utf-8\r\n\r\n{{"payload":{payload}}}\r\n--graphql'
    )
    body = MULTIPART.start.decode() + part + MULTIPART.keepalive.decode() + MULTIPART.end.decode()
    assert body.endswith("\r\n--graphql--\r\n")
