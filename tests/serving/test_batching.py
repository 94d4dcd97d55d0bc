"""DynamicBatcher on a fake predict: validation, fill-until-full, the deadline, skips, draining."""
from __future__ import annotations

import asyncio
import time

import pytest
from wsdeploy.serving.batching import DynamicBatcher


def _batcher(calls, **kw):
    def predict(items):
        calls.append(list(items))
        return [x * 10 for x in items]

    settings = dict(max_batch_size=4, batch_timeout=0.05, max_queue=8)
    settings.update(kw)
    return DynamicBatcher(predict, **settings)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(max_batch_size=0), "max_batch_size"),
        (dict(max_batch_size=2.5), "max_batch_size"),
        (dict(batch_timeout=-1), "batch_timeout"),
        (dict(batch_timeout=60), "batch_timeout"),
        (dict(max_queue=2), "max_queue"),
    ],
)
def test_settings_are_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _batcher([], **kwargs)


def test_fills_until_full_then_splits_in_order():
    calls = []

    async def go():
        b = _batcher(calls, batch_timeout=1.0)
        await b.start()
        results = await asyncio.gather(*(b.submit(i) for i in range(6)))
        await b.stop()
        return results

    t0 = time.monotonic()
    assert asyncio.run(go()) == [0, 10, 20, 30, 40, 50]
    assert calls[0] == [0, 1, 2, 3]  # full batch ran at once, not after the 1 s deadline
    assert calls[1] == [4, 5]  # the rest waits for the deadline (or the stop)
    assert time.monotonic() - t0 < 3


def test_a_lone_request_waits_at_most_the_timeout():
    calls = []

    async def go():
        b = _batcher(calls, batch_timeout=0.05)
        await b.start()
        t0 = time.monotonic()
        result = await b.submit(7)
        waited = time.monotonic() - t0
        await b.stop()
        return result, waited

    result, waited = asyncio.run(go())
    assert result == 70 and calls == [[7]]
    assert 0.04 <= waited < 1.0


def test_zero_timeout_and_batch_size_one_never_batch():
    calls = []

    async def go():
        b = _batcher(calls, max_batch_size=1, batch_timeout=0.0, max_queue=4)
        await b.start()
        await asyncio.gather(*(b.submit(i) for i in range(4)))
        await b.stop()

    asyncio.run(go())
    assert [len(c) for c in calls] == [1, 1, 1, 1]


def test_admission_is_bounded():
    b = _batcher([], max_queue=4)
    assert [b.try_admit() for _ in range(5)] == [True, True, True, True, False]
    b.release()
    assert b.try_admit() and not b.try_admit()


def test_cancelled_requests_are_skipped_and_stop_drains_the_queue():
    calls = []

    async def go():
        b = _batcher(calls, batch_timeout=0.2)
        await b.start()
        gone = asyncio.ensure_future(b.submit(1))
        kept = asyncio.ensure_future(b.submit(2))
        await asyncio.sleep(0.01)
        gone.cancel()
        await b.stop()  # drains: the queued request still gets its answer
        return await kept

    assert asyncio.run(go()) == 20
    assert calls == [[2]]


def test_predict_errors_reach_every_caller_of_that_batch_only():
    state = {"fail": True}

    def predict(items):
        if state.pop("fail", False):
            raise RuntimeError("boom")
        return list(items)

    async def go():
        b = DynamicBatcher(predict, max_batch_size=2, batch_timeout=0.1, max_queue=4)
        await b.start()
        first = await asyncio.gather(b.submit(1), b.submit(2), return_exceptions=True)
        second = await b.submit(3)
        await b.stop()
        return first, second

    first, second = asyncio.run(go())
    assert all(isinstance(e, RuntimeError) for e in first) and second == 3
