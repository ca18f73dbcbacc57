"""Dynamic batching of concurrent requests (serve/batching.py): every caller gets its own answer, requests that
queue during a model call share the next one, and an error reaches exactly the requests of its batch."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from sigmarec.serve.batching import RequestBatcher


def slow_double(requests, resolved):
    time.sleep(0.02)  # a model call: long enough for the other threads to queue behind it
    if any(r == "boom" for r in requests):
        raise RuntimeError("model failed")
    return [2 * x for x in resolved]


def test_concurrent_requests_get_their_own_answers_in_shared_batches():
    batcher = RequestBatcher(slow_double, max_batch=16)
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda i: batcher.submit(f"r{i}", i), range(60)))
    batcher.close()
    assert answers == [2 * i for i in range(60)]
    assert sum(batcher.batch_sizes) == 60 and max(batcher.batch_sizes) > 1 and max(batcher.batch_sizes) <= 16


def test_a_lone_request_waits_for_no_batch_and_max_batch_one_scores_each_alone():
    batcher = RequestBatcher(slow_double, max_batch=1)
    start = time.perf_counter()
    assert batcher.submit("a", 5) == 10
    assert time.perf_counter() - start < 1.0
    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(lambda i: batcher.submit("r", i), range(12))) == [2 * i for i in range(12)]
    batcher.close()
    assert set(batcher.batch_sizes) == {1}


def test_an_error_reaches_its_batch_and_the_worker_goes_on():
    gate = threading.Event()

    def gated(requests, resolved):
        gate.wait(5)
        return slow_double(requests, resolved)

    batcher = RequestBatcher(gated, max_batch=8)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(batcher.submit, "ok", 1)  # occupies the worker until the gate opens
        time.sleep(0.05)
        bad = pool.submit(batcher.submit, "boom", 2)  # these two queue into one batch
        other = pool.submit(batcher.submit, "fine", 3)
        time.sleep(0.05)
        gate.set()
        assert first.result() == 2
        with pytest.raises(RuntimeError, match="model failed"):
            bad.result()
        with pytest.raises(RuntimeError, match="model failed"):
            other.result()
    assert batcher.submit("after", 4) == 8
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit("late", 1)
    with pytest.raises(ValueError, match="max_batch"):
        RequestBatcher(slow_double, max_batch=0)
