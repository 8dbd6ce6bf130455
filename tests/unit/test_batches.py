"""The batch queue both ends of the worker channel send their frames through."""

from __future__ import annotations

import asyncio

from herder.protocol.batches import Batches


def test_items_come_out_in_order_in_batches_up_to_the_limit() -> None:
    async def main() -> list[list[int]]:
        q: Batches[int] = Batches()
        for i in range(5):
            q.put(i)
        assert len(q) == 5
        return [await q.take(2), await q.take(2), await q.take(10)]

    assert asyncio.run(main()) == [[0, 1], [2, 3], [4]]


def test_a_waiting_taker_wakes_once_for_what_was_put_meanwhile() -> None:
    async def main() -> list[list[str]]:
        q: Batches[str] = Batches()
        taken: list[list[str]] = []

        async def taker() -> None:
            for _ in range(2):
                taken.append(await q.take(100))

        task = asyncio.create_task(taker())
        await asyncio.sleep(0)  # the taker waits on an empty queue
        q.put("a")
        q.put("b")  # before the taker runs again: both in its batch
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        q.put("c")
        await asyncio.wait_for(task, 5)
        assert len(q) == 0
        return taken

    assert asyncio.run(main()) == [["a", "b"], ["c"]]


def test_a_cancelled_taker_leaves_the_queue_usable() -> None:
    async def main() -> list[int]:
        q: Batches[int] = Batches()
        waiting = asyncio.create_task(q.take(1))
        await asyncio.sleep(0)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        q.put(7)
        return await asyncio.wait_for(q.take(1), 5)

    assert asyncio.run(main()) == [7]


def test_an_item_put_for_later_waits_for_its_delay_or_for_an_item_put_now() -> None:
    async def main() -> None:
        q: Batches[str] = Batches()
        loop = asyncio.get_running_loop()
        q.put_later("a", 0.05)
        started = loop.time()
        q.put_later("b", 10.0)  # the first delay holds: one wake-up for both
        assert await asyncio.wait_for(q.take(10), 5) == ["a", "b"]
        assert loop.time() - started >= 0.04
        q.put_later("c", 10.0)
        waiting = asyncio.create_task(q.take(10))
        await asyncio.sleep(0.01)
        assert not waiting.done()  # held
        q.put("d")  # something to send now takes the held one with it
        assert await asyncio.wait_for(waiting, 5) == ["c", "d"]

    asyncio.run(main())
