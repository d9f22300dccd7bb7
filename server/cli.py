"""The `switchboard` command: serve, token, publish, schema."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import orjson

from switchboard.exceptions import ConfigurationError, SwitchboardError
from switchboard.security.auth import DEFAULT_TOKEN_TTL, mint_token
from switchboard.settings import Settings


def _serve(args: argparse.Namespace) -> int:
    from switchboard.web.serving import make_config, serve, serve_uvicorn

    if args.forwarded_allow_ips is not None:
        # The setting of the app this command serves, for its workers too (they inherit it).
        os.environ["SWITCHBOARD_TRUSTED_PROXIES"] = args.forwarded_allow_ips
    settings = Settings.from_env()
    hub = None
    if args.workers > 1 and not settings.redis_url and args.server != "uvicorn":
        # N workers and no Redis: the local hub, in this process, carries the groups between them.
        from switchboard.layers.local_hub import LocalHub

        hub = LocalHub(args.hub_port, os.environ.get("SWITCHBOARD_HUB_PASSWORD")).start()
        os.environ["REDIS_URL"] = hub.url  # the workers' (spawned: they inherit it)
        # The password goes to the log only in development mode (a credential in a log otherwise).
        shown = hub.url if settings.dev else hub.url_with("<SWITCHBOARD_HUB_PASSWORD>")
        layer = f"local hub on 127.0.0.1:{hub.port}; publish from other processes with REDIS_URL={shown}"
    else:
        layer = "redis" if settings.redis_url else "in-memory"
    url = f"http://{args.host}:{args.port}/graphql"
    print(f"Switchboard on {url} ({settings.mode} mode, {layer} layer, {args.workers} worker(s))")
    if settings.dev and not settings.secret_is_default:
        print("Mint a token: switchboard token --user <id>  (none printed: the secret is a real one)")
    elif settings.dev:
        # Only with the development secret, which is in the source anyway: a token signed with a
        # real secret printed in a log is a credential in a log.
        dev_token = mint_token(settings.secret, "1")
        print(f"GraphiQL:          {url}?token={dev_token}")
        print(f"Demo page:         http://{args.host}:{args.port}/demo?token={dev_token}")
        print(f"Development token: {dev_token}  (user 1)")
    sys.stdout.flush()
    if args.server == "uvicorn":
        if args.workers > 1:
            print("--server uvicorn runs one process; run several behind a balancer", file=sys.stderr)
            return 2
        return serve_uvicorn(args.app, args.host, args.port, settings)
    try:
        return serve(make_config(args.host, args.port, args.app, settings), args.workers)
    finally:
        if hub is not None:
            hub.stop()


def _token(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if args.ttl > settings.max_token_ttl:
        print(
            f"--ttl {args.ttl} exceeds SWITCHBOARD_MAX_TOKEN_TTL ({settings.max_token_ttl}):"
            " servers would refuse it",
            file=sys.stderr,
        )
        return 2
    print(mint_token(settings.secret, args.user, publisher=args.publisher, ttl=args.ttl))
    return 0


def _publish(args: argparse.Namespace) -> int:
    from switchboard.publish import send_to_group_sync

    if args.kind == "notify":
        envelope = send_to_group_sync(args.group, "notify", message=args.message, status=args.status)
    else:
        try:
            payload = orjson.loads(args.payload)
        except orjson.JSONDecodeError as exc:
            print(f"--payload is not JSON: {exc}", file=sys.stderr)
            return 2
        envelope = send_to_group_sync(args.group, "data", payload=payload)
    print(orjson.dumps({"id": envelope.id, "group": envelope.group, "type": envelope.type}).decode())
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from switchboard.publish import revoke_sync

    envelope = revoke_sync(args.user, args.group, session_id=args.session, reason=args.reason)
    print(orjson.dumps({"id": envelope.id, "user": args.user, "group": args.group}).decode())
    return 0


def _schema(args: argparse.Namespace) -> int:
    from switchboard.schema import schema

    print(schema.as_str())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server under hypercorn")
    serve.add_argument("--host", default=os.environ.get("SWITCHBOARD_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("SWITCHBOARD_PORT", "8000")))
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes; without REDIS_URL a local hub in this process carries groups between them",
    )
    serve.add_argument(
        "--hub-port",
        type=int,
        default=int(os.environ.get("SWITCHBOARD_HUB_PORT", "0")),
        help="with --workers N and no REDIS_URL: the local hub's port on 127.0.0.1, for publishers "
        "in other processes (SWITCHBOARD_HUB_PORT; default any free port, printed)",
    )
    serve.add_argument(
        "--server",
        choices=["hypercorn", "uvicorn"],
        default="hypercorn",
        help="ASGI server; uvicorn (extra [uvicorn]) holds sockets in about half the memory",
    )
    serve.add_argument(
        "--forwarded-allow-ips",
        default=None,
        help="comma-separated addresses or networks (or *) of the proxies whose Forwarded / "
        "X-Forwarded-For name the client (SWITCHBOARD_TRUSTED_PROXIES)",
    )
    serve.add_argument(
        "--app",
        default="switchboard.web.asgi:app",
        help="ASGI app as module:attribute, e.g. one with custom event types",
    )
    serve.set_defaults(func=_serve)

    token = commands.add_parser("token", help="print a signed token for a user")
    token.add_argument("--user", required=True)
    token.add_argument("--publisher", action="store_true", help="may publish to any group")
    token.add_argument("--ttl", type=int, default=DEFAULT_TOKEN_TTL, help="seconds until it expires")
    token.set_defaults(func=_token)

    publish = commands.add_parser("publish", help="send an event to a group (needs REDIS_URL)")
    kinds = publish.add_subparsers(dest="kind", required=True)
    notify = kinds.add_parser("notify", help="a notification")
    notify.add_argument("--group", required=True)
    notify.add_argument("--message", required=True)
    notify.add_argument("--status", default="info", choices=["info", "success", "warning", "error"])
    data = kinds.add_parser("data", help="a JSON payload")
    data.add_argument("--group", required=True)
    data.add_argument("--payload", required=True, help="JSON text")
    publish.set_defaults(func=_publish)

    revoke = commands.add_parser(
        "revoke", help="take a user's sessions out of a group, in every process (needs REDIS_URL)"
    )
    revoke.add_argument("--user", required=True)
    revoke.add_argument("--group", required=True, help="e.g. note_5 (not all, not the user's own group)")
    revoke.add_argument("--session", default=None, help="only this session of the user")
    revoke.add_argument("--reason", default=None, help="told to the client in its RevokedEvent")
    revoke.set_defaults(func=_revoke)

    schema = commands.add_parser("schema", help="print the GraphQL SDL")
    schema.set_defaults(func=_schema)
    return parser


SERVER_PACKAGES = frozenset({"quart", "strawberry", "hypercorn", "graphql", "prometheus_client", "uvicorn"})


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (SwitchboardError, ConfigurationError) as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.partition(".")[0] not in SERVER_PACKAGES:
            raise
        # The plain install publishes; serving needs the server's extra.
        print(
            f"switchboard: {args.command} needs the server, which is not installed ({exc.name} is missing):"
            ' pip install "switchboard-live[server]"',
            file=sys.stderr,
        )
        return 2
