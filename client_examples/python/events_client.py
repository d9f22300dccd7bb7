"""Switchboard from Python with gql: authenticate, subscribe to events, open a note, print events,
and reconnect with backoff when the connection drops, resuming from the last cursor seen in each
group so that nothing is missed (or a ResumeEvent says the gap could not be recovered).

    pip install "gql[websockets]"
    python events_client.py --url ws://127.0.0.1:8000/graphql --token "$(switchboard token --user 1)" --note 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from gql import Client, gql
from gql.transport.exceptions import TransportError
from gql.transport.websockets import WebsocketsTransport
from websockets.exceptions import ConnectionClosed

EVENTS = gql(
    """
    subscription($since: [SinceInput!]) {
      events(since: $since) {
        __typename
        ... on NotifyEvent { id group message status sentAt cursor }
        ... on DataEvent { id group payload sentAt cursor }
        ... on ResumeEvent { group recovered reason }
        ... on PresenceEvent { group kind userId }
      }
    }
    """
)
OPEN_NOTE = gql("mutation($note: ID!) { openNote(noteId: $note) { id groups } }")


async def run(url: str, token: str, note: str | None, count: int) -> None:
    received, backoff = 0, 0.5
    cursors: dict[str, str] = {}  # group -> cursor of the last event seen there
    while True:
        transport = WebsocketsTransport(
            url=url,
            init_payload={"authorization": f"Bearer {token}"},
            # gql offers the legacy graphql-ws protocol first unless told otherwise.
            subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        )
        try:
            async with Client(transport=transport, fetch_schema_from_transport=False) as session:
                backoff = 0.5
                if note:
                    opened = await session.execute(OPEN_NOTE, variable_values={"note": note})
                    print(json.dumps({"opened": opened["openNote"]}), flush=True)
                since = [{"group": group, "cursor": cursor} for group, cursor in cursors.items()]
                async for result in session.subscribe(EVENTS, variable_values={"since": since or None}):
                    event = result["events"]
                    print(json.dumps(event), flush=True)
                    if event.get("cursor"):
                        cursors[event["group"]] = event["cursor"]
                    if event["__typename"] == "ResumeEvent":
                        continue
                    received += 1
                    if count and received >= count:
                        return
        except (TransportError, OSError, ConnectionClosed) as exc:
            print(f"disconnected ({exc!r}); reconnecting in {backoff:.1f}s", file=sys.stderr, flush=True)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="ws://127.0.0.1:8000/graphql")
    parser.add_argument("--token", required=True, help="a token from `switchboard token --user <id>`")
    parser.add_argument("--note", help="a note to open, so its events arrive too")
    parser.add_argument("--count", type=int, default=0, help="exit after this many events (0: never)")
    args = parser.parse_args()
    try:
        asyncio.run(run(args.url, args.token, args.note, args.count))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
