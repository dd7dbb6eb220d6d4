"""The hub's waits: woken by an event, ended by their time-out or a cancel, never left
behind."""

from __future__ import annotations

import asyncio

from acjob.hub import Hub
from acjob.model import State


def test_a_wait_is_woken_by_the_event_before_the_publisher_goes_on() -> None:
    async def main() -> list[object]:
        hub = Hub()
        order: list[object] = []

        async def waiter() -> None:
            order.append(await hub.wait("j", 10.0))

        task = asyncio.create_task(waiter())
        await asyncio.sleep(0)
        assert hub.waiting == 1
        hub.publish("j", 7, State.COMPLETE)
        # One turn of the loop: the waiter runs before the publisher's next step.
        await asyncio.sleep(0)
        order.append("publisher")
        await task
        assert hub.waiting == 0
        return order

    assert asyncio.run(main()) == [7, "publisher"]


def test_a_wait_times_out_with_none_and_a_cancelled_one_leaves_nothing() -> None:
    async def main() -> None:
        hub = Hub()
        assert await hub.wait("j", 0.01) is None
        assert hub.waiting == 0
        task = asyncio.create_task(hub.wait("j", 10.0))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert hub.waiting == 0
        hub.wake("j")  # nobody waits: nothing happens

    asyncio.run(main())


def test_a_wait_for_the_final_state_sleeps_through_the_states_on_the_way() -> None:
    async def main() -> None:
        hub = Hub()
        final = asyncio.create_task(hub.wait("j", 10.0, final=True))
        other = asyncio.create_task(hub.wait("j", 10.0))
        await asyncio.sleep(0)
        hub.publish("j", 2, State.RUNNING)
        hub.wake("j")  # progress
        await asyncio.sleep(0)
        assert await other == 2 and not final.done() and hub.waiting == 1
        hub.publish("j", 3, State.COMPLETE)
        assert await final == 3 and hub.waiting == 0

    asyncio.run(main())
