"""Dynamic batching: collect requests into one model call, off the event loop.

Two validated numbers decide a batch (as in LitServe's `collate_requests`): `max_batch_size` and
`batch_timeout`. The collector takes the oldest waiting request, then keeps taking requests until
the batch is full or a monotonic deadline `batch_timeout` seconds after the first one passes.
While a batch runs in the inference thread, new requests wait in the queue, so under load the
next batch is already full when the thread frees up; with one request at a time a request waits
at most `batch_timeout` before it runs.

Admission is bounded: at most `max_queue` requests are admitted at once (waiting in the queue or
running); `try_admit` refuses the next one, and the HTTP layer answers it with 503 + Retry-After
before reading its body. Memory therefore stays below `max_queue` decoded images plus bodies.

A request whose caller went away (its future cancelled, e.g. the client disconnected) is skipped
when its batch is formed and its result dropped if it was already running.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["BatchStats", "DynamicBatcher", "QueueFullError"]

logger = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")


class QueueFullError(RuntimeError):
    """The batcher has admitted `max_queue` requests already; retry later."""


@dataclasses.dataclass
class BatchStats:
    """Counters a metrics exporter reads; `on_batch(size, seconds)` is called after every batch."""

    batches: int = 0
    items: int = 0
    max_batch_seen: int = 0


@dataclasses.dataclass
class _Pending(Generic[In, Out]):
    item: In
    future: asyncio.Future


class DynamicBatcher(Generic[In, Out]):
    """Runs `predict(list_of_items) -> list_of_results` on batches of concurrent requests.

    Args:
        predict: called in one dedicated thread with 1..max_batch_size items; returns one result
            per item, in order. An exception fails every request of that batch.
        max_batch_size: the most items per call (>= 1).
        batch_timeout: seconds to wait for more items after the first (>= 0).
        max_queue: the most requests admitted at once, waiting or running (>= max_batch_size).
        on_batch: optional callback `(batch_size, seconds)` after each batch, for metrics.

    Use from one event loop: `await start()`, `admit = try_admit()`, `await submit(item)`,
    `release()`, `await stop()`.
    """

    def __init__(
        self,
        predict: Callable[[Sequence[In]], Sequence[Out]],
        *,
        max_batch_size: int,
        batch_timeout: float,
        max_queue: int,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        if not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ValueError(f"max_batch_size must be an integer >= 1, got {max_batch_size!r}")
        if not isinstance(batch_timeout, (int, float)) or not 0 <= batch_timeout <= 10:
            raise ValueError(f"batch_timeout must be in [0, 10] seconds, got {batch_timeout!r}")
        if not isinstance(max_queue, int) or max_queue < max_batch_size:
            raise ValueError(
                f"max_queue must be an integer >= max_batch_size ({max_batch_size}), got {max_queue!r}"
            )
        self.predict = predict
        self.max_batch_size = max_batch_size
        self.batch_timeout = float(batch_timeout)
        self.max_queue = max_queue
        self.on_batch = on_batch
        self.stats = BatchStats()
        self.admitted = 0  # requests between try_admit() and release()
        self._queue: asyncio.Queue[_Pending[In, Out] | None] | None = None
        self._task: asyncio.Task | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a batch (not yet running)."""
        return self._queue.qsize() if self._queue is not None else 0

    async def start(self) -> None:
        """Start the collector task on the running loop (idempotent)."""
        if self._task is not None:
            return
        self._queue = asyncio.Queue()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="wsdeploy-infer")
        self._task = asyncio.get_running_loop().create_task(self._collect_loop(), name="wsdeploy-batcher")

    def try_admit(self) -> bool:
        """Reserve a place for one request; False when `max_queue` are already admitted."""
        if self.admitted >= self.max_queue:
            return False
        self.admitted += 1
        return True

    def release(self) -> None:
        """Give back the place taken by `try_admit` (call once, when the request is done)."""
        self.admitted = max(0, self.admitted - 1)

    async def submit(self, item: In) -> Out:
        """Queue one item and wait for its result (the caller must hold an admission)."""
        if self._queue is None or self._task is None or self._task.done():
            raise RuntimeError("the batcher is not running; call start() first")
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(item, future))
        return await future

    async def stop(self) -> None:
        """Finish every queued request, then stop the collector and the inference thread."""
        if self._task is None or self._queue is None:
            return
        self._queue.put_nowait(None)  # sentinel after the last queued request
        try:
            await self._task
        finally:
            self._task = None
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    async def _collect_loop(self) -> None:
        assert self._queue is not None  # set by start()
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            deadline = time.monotonic() + self.batch_timeout
            while len(batch) < self.max_batch_size:
                remaining = deadline - time.monotonic()
                try:
                    if not self._queue.empty():
                        nxt = self._queue.get_nowait()
                    elif remaining <= 0:
                        break
                    else:
                        nxt = await asyncio.wait_for(self._queue.get(), remaining)
                except (asyncio.TimeoutError, asyncio.QueueEmpty):
                    break
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
            await self._run_batch(batch)

    async def _run_batch(self, batch: list[_Pending[In, Out]]) -> None:
        live = [p for p in batch if not p.future.done()]  # done = cancelled by a gone caller
        if not live:
            return
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self.predict, [p.item for p in live])
            if len(results) != len(live):
                raise RuntimeError(f"predict returned {len(results)} results for {len(live)} items")
        except Exception as exc:  # noqa: BLE001 - handed to every waiting request, which re-raises it
            logger.exception("batch of %d failed", len(live))
            for p in live:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        seconds = time.perf_counter() - t0
        self.stats.batches += 1
        self.stats.items += len(live)
        self.stats.max_batch_seen = max(self.stats.max_batch_seen, len(live))
        if self.on_batch is not None:
            self.on_batch(len(live), seconds)
        for p, result in zip(live, results):
            if not p.future.done():
                p.future.set_result(result)
