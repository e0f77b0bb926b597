"""Budget: exact call caps under heavy concurrency, token cap, deadline, release."""

from __future__ import annotations

import threading
import time

import pytest

from rlm_graph.budget import Budget, BudgetExhausted
from rlm_graph.state import Usage


def _usage(tokens: int) -> Usage:
    return Usage(input_tokens=tokens, output_tokens=0, total_tokens=tokens, llm_calls=1)


def test_call_cap_exact_with_64_threads() -> None:
    budget = Budget(max_llm_calls=10)
    barrier = threading.Barrier(64)
    granted: list[int] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        barrier.wait()
        try:
            budget.reserve()
        except BudgetExhausted:
            return
        time.sleep(0.01)
        budget.record(_usage(1))
        with lock:
            granted.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 10
    assert budget.usage["llm_calls"] == 10
    assert budget.exhausted() == "max_llm_calls=10 reached"


def test_release_returns_the_slot() -> None:
    budget = Budget(max_llm_calls=1)
    budget.reserve()
    budget.release()
    budget.reserve()
    with pytest.raises(BudgetExhausted, match="max_llm_calls=1"):
        budget.reserve()
    assert budget.usage["llm_calls"] == 0


def test_token_cap_stops_new_calls() -> None:
    budget = Budget(max_total_tokens=100)
    budget.reserve()
    budget.record(_usage(60))
    budget.reserve()
    budget.record(_usage(60))
    with pytest.raises(BudgetExhausted, match="max_total_tokens=100"):
        budget.reserve()
    assert budget.usage["total_tokens"] == 120


def test_deadline() -> None:
    now = [0.0]
    budget = Budget(max_seconds=5, clock=lambda: now[0])
    budget.reserve()
    now[0] = 5.0
    assert budget.exhausted() == "max_seconds=5 reached"
    with pytest.raises(BudgetExhausted):
        budget.reserve()


def test_unlimited_and_remaining() -> None:
    budget = Budget()
    for _ in range(1000):
        budget.reserve()
    assert budget.exhausted() is None
    assert budget.remaining() == {"llm_calls": None, "total_tokens": None, "seconds": None}
    capped = Budget(max_llm_calls=3, max_total_tokens=50)
    capped.reserve()
    capped.record(_usage(20))
    assert capped.remaining()["llm_calls"] == 2
    assert capped.remaining()["total_tokens"] == 30
