"""The runner of task-type code: results come back, errors too, a slow call holds nobody up,
and the time limit holds."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from herder.master.coderunner import CodeRunner


def test_results_and_errors_come_back_to_their_callers() -> None:
    async def main() -> None:
        runner = CodeRunner(limit=5.0)

        def boom() -> None:
            raise ValueError("bad split")

        results = await asyncio.gather(
            *(runner.run(lambda x: x * 2, i) for i in range(100)),
            runner.run(boom),
            return_exceptions=True,
        )
        assert results[:100] == [i * 2 for i in range(100)]
        assert isinstance(results[100], ValueError) and "bad split" in str(results[100])
        runner.shutdown()

    asyncio.run(main())


def test_calls_run_off_the_event_loop_thread() -> None:
    async def main() -> None:
        runner = CodeRunner(limit=5.0)
        loop_thread = threading.get_ident()
        assert await runner.run(threading.get_ident) != loop_thread
        runner.shutdown()

    asyncio.run(main())


def test_a_slow_call_does_not_hold_up_the_calls_behind_it() -> None:
    release = threading.Event()

    async def main() -> None:
        runner = CodeRunner(limit=10.0)
        slow = asyncio.ensure_future(runner.run(release.wait, 10.0))
        quick = [asyncio.ensure_future(runner.run(lambda i=i: i)) for i in range(5)]
        started = time.monotonic()
        assert await asyncio.wait_for(asyncio.gather(*quick), 2.0) == list(range(5))
        assert time.monotonic() - started < 2.0
        assert not slow.done()
        release.set()
        assert await slow is True
        runner.shutdown()

    asyncio.run(main())


def test_the_time_limit_holds() -> None:
    release = threading.Event()

    async def main() -> None:
        runner = CodeRunner(limit=0.2)
        with pytest.raises(TimeoutError, match=r"limit of 0\.2 s"):
            await runner.run(release.wait, 10.0)
        release.set()
        runner.shutdown()

    asyncio.run(main())


def test_a_kind_of_call_known_to_be_quick_runs_inline_until_one_is_slow(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from herder.master import coderunner

    async def main() -> None:
        runner = CodeRunner(limit=5.0)
        loop_thread = threading.get_ident()
        for _ in range(coderunner.INLINE_AFTER):  # timed on the threads first
            assert await runner.run(threading.get_ident, kind="t.split") != loop_thread
        assert runner.runs_inline("t.split")
        assert await runner.run(threading.get_ident, kind="t.split") == loop_thread
        # a call with an unusually large input can be sent to a thread all the same
        assert await runner.run(threading.get_ident, kind="t.split", inline=False) != loop_thread
        # errors come back the same way inline
        with pytest.raises(ZeroDivisionError):
            await runner.run(lambda: 1 / 0, kind="t.split")
        assert not runner.runs_inline("other.split")

        def slow() -> int:
            time.sleep(coderunner.DEMOTE_ABOVE * 2)
            return threading.get_ident()

        assert await runner.run(slow, kind="t.split") == loop_thread  # it could not know
        assert not runner.runs_inline("t.split")  # not until it is quick again
        for _ in range(coderunner.INLINE_AFTER):
            assert await runner.run(threading.get_ident, kind="t.split") != loop_thread
        assert await runner.run(slow, kind="t.split") == loop_thread  # slow again, soon
        assert not runner.runs_inline("t.split")  # and never again
        for _ in range(coderunner.INLINE_AFTER * 2):
            assert await runner.run(threading.get_ident, kind="t.split") != loop_thread
        runner.shutdown()

    with caplog.at_level("WARNING"):
        asyncio.run(main())
    assert "t.split took" in caplog.text and "runs on threads from now on" in caplog.text


def test_a_kind_slow_once_in_a_long_while_comes_back_once_it_is_quick_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One slow run (a quick call that lost the core to another process looks the same) sends
    the kind to the threads until its recent runs are quick again; another one long after,
    too: neither sends it there for good."""
    from herder.master import coderunner

    async def main() -> None:
        runner = CodeRunner(limit=5.0)
        loop_thread = threading.get_ident()
        calls = 0
        first_slow = coderunner.INLINE_AFTER + 1
        second_slow = first_slow + coderunner.INLINE_AFTER + coderunner.SLOW_AGAIN_WITHIN + 1

        def slow_twice() -> int:
            nonlocal calls
            calls += 1
            if calls in (first_slow, second_slow):
                time.sleep(coderunner.DEMOTE_ABOVE * 2)
            return threading.get_ident()

        async def run() -> int:
            return int(await runner.run(slow_twice, kind="t.split"))

        for _ in range(coderunner.INLINE_AFTER):
            assert await run() != loop_thread
        assert await run() == loop_thread  # the first slow run
        assert not runner.runs_inline("t.split")
        for _ in range(coderunner.INLINE_AFTER):
            assert await run() != loop_thread
        while calls < second_slow - 1:
            assert await run() == loop_thread
        assert await run() == loop_thread  # the second, more than SLOW_AGAIN_WITHIN runs later
        for _ in range(coderunner.INLINE_AFTER):
            assert await run() != loop_thread
        assert runner.runs_inline("t.split")
        runner.shutdown()

    with caplog.at_level("WARNING"):
        asyncio.run(main())
    assert "runs on threads from now on" not in caplog.text


def test_a_kind_with_one_slow_call_among_its_recent_ones_stays_on_threads() -> None:
    from herder.master import coderunner

    async def main() -> None:
        runner = CodeRunner(limit=5.0)

        def slow() -> None:
            time.sleep(coderunner.INLINE_BELOW * 4)

        await runner.run(slow, kind="t.aggregate")
        for _ in range(coderunner.INLINE_AFTER - 1):
            await runner.run(lambda: None, kind="t.aggregate")
        assert not runner.runs_inline("t.aggregate")
        await runner.run(lambda: None, kind="t.aggregate")  # the slow one leaves the window
        assert runner.runs_inline("t.aggregate")
        runner.shutdown()

    asyncio.run(main())
