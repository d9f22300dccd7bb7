"""A noisy neighbour for the benchmark: one client doing what issue 15's attacker did, in a loop,
until it is stopped. Its requests are refused by Switchboard's budgets; what matters is what they
cost everyone else (W2's p99 with and without it).

  python bench/abuser.py --url http://127.0.0.1:8000/graphql --token ...
"""

from __future__ import annotations

import argparse
import asyncio
import json

import httpx

HEAVY = "{ " + "a " * 30_000 + "}"  # 60 KB: under the body limit, 15x the token limit
SESSIONS = "{ sessions { id groups } }"


async def loop(client: httpx.AsyncClient, url: str, headers: dict[str, str], counts: dict[str, int]) -> None:
    while True:
        for query in (HEAVY, SESSIONS):
            try:
                reply = await client.post(url, json={"query": query}, headers=headers)
                body = reply.json() if reply.status_code == 200 else {}
                code = (
                    (body.get("errors") or [{}])[0].get("extensions", {}).get("code", str(reply.status_code))
                )
            except (httpx.HTTPError, ValueError):
                code = "failed"
            counts[code] = counts.get(code, 0) + 1


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    counts: dict[str, int] = {}
    headers = {"Authorization": f"Bearer {args.token}"}
    async with httpx.AsyncClient(timeout=30) as client:
        tasks = [
            asyncio.create_task(loop(client, args.url, headers, counts)) for _ in range(args.concurrency)
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
