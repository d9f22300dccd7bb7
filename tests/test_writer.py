"""The per-socket writer (engine.writer.FrameWriter, framed by ws.socket_writer): bounded, in
order, and holding nothing while idle.

The ASGI `send` here is a real coroutine that the test controls (it blocks until released), the
way a socket whose peer stops reading blocks a server's send.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from switchboard.compat.eager_start import start_eagerly
from switchboard.engine.writer import LARGE_FRAME, FlushBatch, QueueMemory, SendBudget, frame_size
from switchboard.ws.socket_writer import SocketWriter


class Gate:
    """An ASGI send that records messages and, when closed, blocks like a full socket."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.open = asyncio.Event()
        self.open.set()

    async def __call__(self, message: dict[str, Any]) -> None:
        await self.open.wait()
        self.sent.append(message)


async def settle(writer: SocketWriter) -> None:
    """Wait for the writer's drain task (if any) to finish."""
    task = writer._task
    if task is not None:
        async with asyncio.timeout(2):
            await task


async def test_frames_go_out_in_order_and_an_idle_writer_keeps_no_queue_or_task() -> None:
    gate = Gate()
    writer = SocketWriter(gate, limit=8)
    for i in range(5):
        assert writer.offer(f"f{i}")
    await settle(writer)
    assert [m["text"] for m in gate.sent] == [f"f{i}" for i in range(5)]
    assert writer._frames is None and writer._task is None
    assert writer.offer("again")  # a new burst starts a new queue and task
    await settle(writer)
    assert gate.sent[-1]["text"] == "again"
    assert writer.sent == 6


async def test_a_full_queue_refuses_instead_of_growing() -> None:
    gate = Gate()
    gate.open.clear()
    writer = SocketWriter(gate, limit=3)
    assert writer.offer("in flight")
    await asyncio.sleep(0)  # the drain task takes it and blocks in send
    assert all(writer.offer(f"q{i}") for i in range(3))
    assert not writer.offer("one too many")
    assert len(writer) == 3
    gate.open.set()
    await settle(writer)
    assert [m["text"] for m in gate.sent] == ["in flight", "q0", "q1", "q2"]
    await writer.stop()


async def test_close_drops_the_queue_unless_flushed_and_nothing_is_queued_after_it() -> None:
    gate = Gate()
    gate.open.clear()
    dropped = SocketWriter(gate, limit=4)
    dropped.offer("in flight")
    await asyncio.sleep(0)
    dropped.offer("never sent")
    dropped.close(4008, "too slow")
    assert dropped.offer("after close")  # accepted and dropped: the socket is going away
    gate.open.set()
    await settle(dropped)
    assert gate.sent == [
        {"type": "websocket.send", "text": "in flight"},
        {"type": "websocket.close", "code": 4008, "reason": "too slow"},
    ]

    flushed_gate = Gate()
    flushed = SocketWriter(flushed_gate, limit=4)
    flushed.offer("last words")
    flushed.close(1001, "going away", flush=True)
    await settle(flushed)
    assert [m.get("text", m.get("code")) for m in flushed_gate.sent] == ["last words", 1001]


async def test_stop_cancels_a_blocked_send_and_drops_what_is_queued() -> None:
    gate = Gate()
    gate.open.clear()
    writer = SocketWriter(gate, limit=4)
    writer.offer("blocked")
    writer.offer("queued")
    await asyncio.sleep(0)
    async with asyncio.timeout(2):
        await writer.stop()
    assert len(writer) == 0 and writer._task is None
    assert gate.sent == []


# -- start_eagerly: a task only when the coroutine has to wait ------------------------------------


async def test_a_coroutine_that_never_waits_runs_at_once_and_makes_no_task() -> None:
    done: list[str] = []

    async def quick() -> None:
        done.append("ran")

    assert start_eagerly(quick(), "t") is None
    assert done == ["ran"]


async def test_a_coroutine_that_waits_is_carried_on_with_the_outcome_of_what_it_waits_for() -> None:
    loop = asyncio.get_running_loop()
    first, second = loop.create_future(), loop.create_future()
    seen: list[object] = []

    async def waits() -> None:
        seen.append(await first)
        await asyncio.sleep(0)  # a bare yield too
        try:
            await second
        except ValueError as exc:
            seen.append(str(exc))

    task = start_eagerly(waits(), "t")
    assert task is not None and not task.done() and seen == []
    first.set_result("one")
    await asyncio.sleep(0)
    second.set_exception(ValueError("two"))
    async with asyncio.timeout(2):
        await task
    assert seen == ["one", "two"]


async def test_cancelling_the_carried_on_task_cancels_the_coroutine_where_it_waits() -> None:
    waiting = asyncio.get_running_loop().create_future()
    seen: list[str] = []

    async def waits() -> None:
        try:
            await waiting
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    task = start_eagerly(waits(), "t")
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    async with asyncio.timeout(2):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert seen == ["cancelled"] and waiting.cancelled()


async def test_an_idle_socket_takes_a_frame_without_a_task() -> None:
    gate = Gate()
    writer = SocketWriter(gate, limit=4)
    assert writer.offer("at once")
    assert writer._task is None and [m["text"] for m in gate.sent] == ["at once"]


async def test_a_writer_stopped_before_its_batch_runs_sends_nothing() -> None:
    gate = Gate()
    batch = FlushBatch()
    writer = SocketWriter(gate, limit=4, batch=batch)
    writer.offer("queued")
    writer.close(1001, "going away", flush=True)
    await writer.stop()  # the connection ended before the loop came round to the batch
    await asyncio.sleep(0.01)
    assert gate.sent == [] and writer._task is None


async def test_writers_woken_in_one_turn_are_started_together_after_it() -> None:
    gate = Gate()
    batch = FlushBatch()
    writers = [SocketWriter(gate, limit=4, batch=batch) for _ in range(3)]
    for i, writer in enumerate(writers):
        writer.offer(f"a{i}")
        writer.offer(f"b{i}")
    assert gate.sent == []  # nothing leaves during the turn that queued it
    await asyncio.sleep(0)
    assert [m["text"] for m in gate.sent] == ["a0", "b0", "a1", "b1", "a2", "b2"]
    assert all(w._task is None for w in writers)  # no send had to wait: no task


async def test_the_queue_is_bounded_in_bytes_too_and_shares_payloads() -> None:
    gate = Gate()
    gate.open.clear()
    writer = SocketWriter(gate, limit=100, max_bytes=1000)
    payload = "p" * 590  # rendered once, queued by reference: ('{"id":..', payload)
    assert writer.offer(("<", payload))
    await asyncio.sleep(0)  # in flight: no longer counted
    assert writer.offer(("<", payload)) and writer.queued_bytes == 592
    assert not writer.offer(("<", payload))  # 1184 bytes would pass the budget
    assert writer.offer("small")
    gate.open.set()
    await settle(writer)
    assert [m["text"] for m in gate.sent] == ["<" + payload + "}"] * 2 + ["small"]
    assert writer.queued_bytes == 0

    alone = SocketWriter(Gate(), limit=100, max_bytes=1000)
    assert alone.offer("x" * 5000)  # larger than the budget, but alone in an empty queue
    await settle(alone)


async def test_the_process_account_counts_a_shared_payload_once_and_sheds_when_over() -> None:
    over: list[int] = []
    memory = QueueMemory(limit=3000, on_over=lambda: over.append(memory.total))
    gates = [Gate() for _ in range(3)]
    for gate in gates:
        gate.open.clear()
    writers = [SocketWriter(gate, limit=100, max_bytes=1 << 20, memory=memory) for gate in gates]
    payload = "p" * 1000
    for writer in writers:
        writer.offer(("<a>", payload))  # taken in flight by each drain
    await asyncio.sleep(0)
    for writer in writers:
        writer.offer(("<b>", payload))  # queued: the payload once, three prefixes
    assert memory.total == 1000 + 3 * 4
    other = "q" * 2500
    writers[0].offer(("<c>", other))  # 3512 + 2504: over the limit, on the next turn
    await asyncio.sleep(0)
    assert over == [1000 + 3 * 4 + 2504]
    await writers[0].stop()  # dropping a queue takes it off the account
    assert memory.total == 1000 + 2 * 4
    for gate in gates:
        gate.open.set()
    for writer in writers[1:]:
        await settle(writer)
    assert memory.total == 0


async def test_large_frames_wait_for_the_process_send_budget_in_order() -> None:
    """Ten sockets that are slow to take a 1 MiB frame: no more than the budget's worth of
    frames is being sent at once; the others wait (not copied yet) and go as shares free up."""
    frame = ('{"id":"1","type":"next","payload":', "x" * (1 << 20))
    budget = SendBudget(limit=3 * frame_size(frame))
    gates = [Gate() for _ in range(10)]
    writers = [SocketWriter(gate, limit=4, budget=budget) for gate in gates]
    for gate in gates:
        gate.open.clear()
    for writer in writers:
        assert writer.offer(frame)
    await asyncio.sleep(0.05)
    assert budget.in_flight == budget.limit
    assert sum(1 for w in writers if w.busy_since) == 10  # every writer has work ...
    for gate in gates:
        gate.open.set()
    for writer in writers:
        await settle(writer)
    assert [len(g.sent) for g in gates] == [1] * 10  # ... and every frame went out
    assert budget.in_flight == 0


async def test_small_frames_never_wait_for_the_send_budget() -> None:
    budget = SendBudget(limit=1)
    big = SocketWriter(blocked := Gate(), limit=4, budget=budget)
    blocked.open.clear()
    big.offer("y" * LARGE_FRAME)
    await asyncio.sleep(0)
    gate = Gate()
    small = SocketWriter(gate, limit=4, budget=budget)
    small.offer("hello")
    await settle(small)
    assert [m["text"] for m in gate.sent] == ["hello"]
    await big.stop()
    assert budget.in_flight == 0  # a send cancelled mid-way gives its share back


async def test_a_waiter_cancelled_while_waiting_leaves_the_queue() -> None:
    budget = SendBudget(limit=10)
    await budget.acquire(10)
    waiting = asyncio.create_task(budget.acquire(5))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    budget.release(10)
    assert budget.in_flight == 0
    await budget.acquire(10)
    assert budget.in_flight == 10
