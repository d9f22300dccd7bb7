"""One client of any transport, as the engine sees it: its session (groups, declared notes,
credentials), its operations, their admission, resume and delivery. A transport adapter owns one
Peer and tells it what the client asked; the Peer answers through the adapter's Transport."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from switchboard import close_codes
from switchboard.context import Context
from switchboard.engine.delivery import Delivery
from switchboard.engine.errors import coded, count_errors
from switchboard.engine.opening import open_session
from switchboard.engine.operations import Operation, Operations, Running
from switchboard.engine.plan import Execute, Multiplexed, run_once
from switchboard.engine.positions import covered_groups, current_cursor, start_position
from switchboard.engine.render import Renderer
from switchboard.engine.resume import catch_up
from switchboard.engine.states import OperationState
from switchboard.engine.subscription import Subscription, join_notes, stop_subscription
from switchboard.engine.transport import Since, Transport
from switchboard.engine.writer import FrameWriter
from switchboard.exceptions import SwitchboardError, Unauthenticated, Unavailable
from switchboard.messages.groups import note_group
from switchboard.security.auth import User
from switchboard.security.handshake import Handshake
from switchboard.security.ratelimit import TokenBucket
from switchboard.services import Services
from switchboard.sessions.session import Session

log = logging.getLogger(__name__)

REFRESH_LEAD = 1.0
"""Seconds before the credentials expire at most that the app is asked again (a quarter of their
lifetime if that is shorter): its answer is in before they expire, so a logout takes effect within
the lifetime the app gave (SWITCHBOARD["EXPIRES_IN"]), not past it."""

MIN_REFRESH_INTERVAL = 0.25

RESUME_WINDOW = 10.0
"""Seconds after the session opens in which new subscriptions resume from the cursors the client
gave on connecting: a client re-subscribing after a reconnect does so at once; later is new."""


class Peer:
    """The transport-neutral side of one connection or stream."""

    __slots__ = (
        "_expiry",
        "_refresh",
        "address",
        "context",
        "delivery",
        "handshake",
        "operations",
        "ops",
        "resume",
        "resume_until",
        "services",
        "session",
        "transport",
    )

    def __init__(
        self,
        services: Services,
        delivery: Delivery,
        transport: Transport,
        context: Context,
        address: str | None,
    ) -> None:
        self.services = services
        self.address = address  # the client's, as the ASGI server reports it
        self.delivery = delivery
        self.transport = transport
        self.context = context
        self.session: Session | None = None
        self.ops = Operations()
        self.operations: TokenBucket | None = None  # the caller's operation budget, once known
        self.handshake: Handshake | None = None  # what the client presented, to ask the app again
        self.resume: dict[str, str] | None = None  # group -> cursor the client gave on connecting
        self.resume_until = 0.0
        self._refresh: asyncio.Task[None] | None = None
        self._expiry: asyncio.TimerHandle | None = None  # when to ask about the credentials again

    # -- what a subscription reads (engine.subscription.Carrier) ------------------------------

    @property
    def writer(self) -> FrameWriter:
        return self.transport.writer

    @property
    def renderer(self) -> Renderer:
        return self.delivery.renderer

    @property
    def session_id(self) -> str:
        return self.session.id if self.session is not None else "-"

    # -- the session -------------------------------------------------------------------------

    async def open(
        self,
        user: User | None,
        still_open: Callable[[], bool],
        resume: dict[str, str] | None = None,
    ) -> Session:
        """Open the session (`all`, `user_<id>`, the directory); the caller's budgets with it."""
        session = await open_session(self.services, user, self._closed_by_server, still_open)
        self.session = session
        self.context.user = user
        self.context.session = session
        self.context.bucket, self.operations = self.services.buckets_of(user, self.address)
        self._schedule_expiry()
        if resume is not None:  # even empty: the client keeps cursors, it gets every position
            self.resume = resume
            self.resume_until = time.monotonic() + RESUME_WINDOW
        return session

    async def _closed_by_server(self, code: int, reason: str) -> None:
        self.transport.end(code, reason)

    async def shutdown(self) -> None:
        """Stop every operation, leave every group, drop what is queued."""
        tasks: list[asyncio.Task[None]] = []
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self._refresh is not None:
            self._refresh.cancel()
            tasks.append(self._refresh)
        for op in self.ops.take_all():
            if isinstance(op, Running):
                op.task.cancel()
                tasks.append(op.task)
                continue
            if self.session is not None:
                self.session.remove_listener(op)
            if op.state is OperationState.OPENING and op.opening is not None:
                op.opening.cancel()  # still joining its notes or replaying
                tasks.append(op.opening)
        for task in tasks:
            with suppress(asyncio.CancelledError, Exception):
                await task
        session, self.session = self.session, None
        if session is not None:
            await self.services.control.disconnected(session)
            await session.disconnect()
        await self.writer.stop()

    # -- credentials -------------------------------------------------------------------------

    def check_credentials(self) -> None:
        """Once the credentials expire, ask the app again (its hook or connect endpoint, with the
        handshake the client made); for a token of ours, or a refusal, the transport ends with
        4403 (WebSocket clients reconnect with a fresh token), 1013 if the app cannot answer.

        A timer does it on time (shortly before expiry when the app is asked); the transports'
        once-a-second sweep calls this as well, as a backstop."""
        user = self.context.user
        if user is None or user.expires_at is None or self._refresh is not None:
            return
        if time.time() >= user.expires_at:
            self._start_refresh(user.id)

    def _schedule_expiry(self) -> None:
        """Set the timer that asks about the credentials again: at their expiry for a token of
        ours; REFRESH_LEAD (at most a quarter of their lifetime) before it when the app decides."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        user = self.context.user
        if user is None or user.expires_at is None:
            return
        lifetime = max(0.0, user.expires_at - time.time())
        asks_app = self.services.authenticator.delegates and self.handshake is not None
        delay = lifetime
        if asks_app:  # never a hot loop, whatever lifetime the app answers with
            delay = max(lifetime - min(REFRESH_LEAD, lifetime / 4), MIN_REFRESH_INTERVAL)
        self._expiry = asyncio.get_running_loop().call_later(delay, self._expired, user.id)

    def _expired(self, user_id: str) -> None:
        self._expiry = None
        if self._refresh is None:
            self._start_refresh(user_id)

    def _start_refresh(self, user_id: str) -> None:
        self._refresh = asyncio.get_running_loop().create_task(
            self._refresh_credentials(user_id), name="switchboard-refresh"
        )

    async def _refresh_credentials(self, user_id: str) -> None:
        authenticator = self.services.authenticator
        try:
            if not authenticator.delegates or self.handshake is None:
                raise Unauthenticated("credentials expired: reconnect with fresh ones")
            user = await authenticator.authenticate(self.handshake)
            if user is None or user.id != user_id:
                raise Unauthenticated("credentials expired: the app no longer names this user")
        except Unavailable as exc:
            log.warning("session %s: could not refresh credentials: %s", self.session_id, exc)
            self.transport.end(close_codes.TRY_AGAIN_LATER, "authentication unavailable: try again later")
        except SwitchboardError as exc:
            log.info("session %s: %s", self.session_id, exc)
            self.transport.end(close_codes.FORBIDDEN, str(exc))
        else:
            self.context.user = user
            if self.session is not None:
                self.session.user = user
            self._schedule_expiry()
        finally:
            self._refresh = None

    # -- operations --------------------------------------------------------------------------

    async def start(self, op_id: str, query: str, variables: dict[str, Any], name: str | None) -> None:
        """Admit and run one operation; its results, errors and end go through the transport."""
        if self.operations is not None and not self.operations.take():
            self._refuse(op_id, [coded("too many operations: slow down", "RATE_LIMITED")])
            return
        if len(self.ops) >= self.services.settings.max_subscriptions:
            self._refuse(op_id, [coded("too many operations in flight on this connection", "RATE_LIMITED")])
            return
        planned = await self.delivery.plan(query, variables, name)
        if isinstance(planned, list):
            self._refuse(op_id, planned)
        elif isinstance(planned, Execute):
            self._spawn(op_id, query, variables, name)
        else:
            await self._subscribe(op_id, planned, name)

    def _refuse(self, op_id: str, errors: list[Any]) -> None:
        count_errors(self.services.stats, errors)
        self.transport.send_error(op_id, errors)

    async def stop(self, op_id: str) -> bool:
        """Stop one operation at the client's request; False if there is none with that id."""
        op = self.ops.pop(op_id)
        if op is None:
            return False
        await self._stop(op)
        self.transport.stopped(op_id)
        return True

    async def _stop(self, op: Operation) -> None:
        if isinstance(op, Running):
            op.task.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await op.task
            return
        await stop_subscription(op, self.session)
        if self.session is not None and not self.session.closed:
            await self.services.control.changed(self.session)  # its subscription count

    async def _subscribe(self, op_id: str, planned: Multiplexed, name: str | None) -> None:
        session = self.session
        if session is None:
            return
        subscription = self.transport.subscription(self, op_id, planned, name)
        since = planned.since + self._resumed(planned, {group for group, _ in planned.since})
        if since or planned.notes or self.transport.tracks_positions or self.resume is not None:
            subscription.held = []  # listen first, then join and read the history: no gap
        self.ops.add(subscription)
        session.add_listener(subscription)
        if subscription.held is not None:
            subscription.opening = asyncio.get_running_loop().create_task(
                self._open(subscription, planned.notes, since), name=f"switchboard-open-{op_id[:16]}"
            )
        await self.services.control.changed(session)  # its subscription count

    def _resumed(self, planned: Multiplexed, explicit: set[str]) -> Since:
        """The cursors given on connecting that apply to this subscription: for the groups it
        covers, when it starts within RESUME_WINDOW (a client re-subscribing after a reconnect),
        and unless `since` names the group itself."""
        if not self.resume or time.monotonic() > self.resume_until:
            return []
        covered = planned.filter.groups
        # A subscription to every group resumes the groups the session is in, or joins with it;
        # one that names its groups resumes those.
        mine = {note_group(note) for note in planned.notes}
        if covered is None and self.session is not None:
            mine.update(self.session.groups)
        return [
            (group, cursor)
            for group, cursor in self.resume.items()
            if group not in explicit and (group in mine or (covered is not None and group in covered))
        ]

    async def _open(self, subscription: Subscription, notes: list[str], since: Since) -> None:
        """Join the notes the subscription declared, replay what it missed, release the held."""
        session = self.session
        services = self.services
        if session is None:
            return
        error = await join_notes(subscription, notes, session, services.authorizer, self.context.user)
        if error is not None:
            if self.ops.discard(subscription):
                session.remove_listener(subscription)
                self._refuse(subscription.id, [coded(str(error), error.code)])
            await services.control.changed(session)
            return
        if notes:
            await services.control.changed(session)  # its groups
        starts: Since = []
        if self.transport.tracks_positions:
            since, starts = await self.transport.positions(subscription, since)
        elif self.resume is not None:
            starts = await self._positions(subscription, {group for group, _ in since})
        if not await catch_up(subscription, since, services.layer, session, starts):
            self.transport.end(close_codes.SLOW_CONSUMER, "slow consumer: outgoing queue overflowed")

    async def _positions(self, subscription: Subscription, resumed: set[str]) -> Since:
        """Where the subscription starts in each group it covers that nothing resumes."""
        layer = self.services.layer
        starts: Since = []
        if self.session is None:
            return starts
        for group in covered_groups(self.session.groups, subscription.filter):
            if group in resumed:
                continue
            cursor = await current_cursor(layer, group)
            if cursor is not None:
                starts.append((group, start_position(cursor, group, subscription.held or ())))
        return starts

    def _spawn(self, op_id: str, query: str, variables: dict[str, Any], name: str | None) -> None:
        """Run a query or mutation in a task: its one result, then complete."""

        async def run() -> None:
            try:
                payload = await run_once(self.delivery.api, self.context, query, variables, name)
            except SwitchboardError as exc:
                self._refuse(op_id, [coded(str(exc), exc.code)])
            else:
                self.transport.send_result(op_id, payload)
                self.transport.send_complete(op_id)
            finally:
                self.ops.discard(running)

        task = asyncio.get_running_loop().create_task(run(), name=f"switchboard-op-{op_id[:16]}")
        running = Running(op_id, task)
        self.ops.add(running)
