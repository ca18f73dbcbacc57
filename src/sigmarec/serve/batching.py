"""Dynamic batching of concurrent single requests: one worker thread scores whatever has queued while it was
busy, up to ``max_batch`` requests per model call.

An idle server scores a lone request at once (no timer, no added latency); under load the requests that arrive
during one model call share the next, so the model runs a few large batches instead of many threads each running
a batch of one on the same cores.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable

Score = Callable[[list[Any], list[Any]], list[Any]]


class RequestBatcher:
    """``submit(request, resolved)`` blocks until the worker has scored the request with ``score(requests,
    resolved)`` (one call per batch, answers in request order) and returns its answer, or raises its error."""

    def __init__(self, score: Score, max_batch: int = 64) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.score, self.max_batch = score, max_batch
        self.batch_sizes: list[int] = []  # every model call's batch size (for the load test and tests)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._run, name="sigmarec-batcher", daemon=True)
        self._worker.start()

    def submit(self, request: Any, resolved: Any) -> Any:
        if not self._worker.is_alive():
            raise RuntimeError("the request batcher is closed")
        future: Future = Future()
        self._queue.put((request, resolved, future))
        return future.result()

    def close(self) -> None:
        """Stop the worker after the requests already queued."""
        self._queue.put(None)
        self._worker.join()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            items, stop = [first], False
            while len(items) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                items.append(nxt)
            self._score(items)
            if stop:
                return

    def _score(self, items: list[tuple[Any, Any, Future]]) -> None:
        self.batch_sizes.append(len(items))
        try:
            answers = self.score([r for r, _, _ in items], [x for _, x, _ in items])
        except BaseException as exc:  # every waiting request gets the error; the worker goes on
            for _, _, future in items:
                future.set_exception(exc)
            return
        for (_, _, future), answer in zip(items, answers):
            future.set_result(answer)
