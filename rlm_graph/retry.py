"""Time limits and retries of one model call, the same for every provider.

Each attempt is bounded by the per-call timeout and by the recursion tree's deadline, whichever
comes first: a sync call runs on a daemon thread that is abandoned at the limit (its HTTP client
has the same timeout, so it ends by itself), an async one is cancelled. A failure that may pass
(rate limits, 5xx, 408/409, connection errors, timeouts) is retried with exponential backoff and
full jitter, waiting at least what ``retry-after`` asks, for at most ``retry_seconds`` after the
first failure. What is left after the last attempt is a :class:`ModelCallError` naming the model,
the host it tried and the cause; a call stopped by the deadline raises :class:`DeadlineExceeded`
(a :class:`~rlm_graph.budget.BudgetExhausted`: the tree's time is spent).
"""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import os
import queue
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from langgraph.errors import GraphBubbleUp

from rlm_graph.budget import BudgetExhausted

__all__ = [
    "DEFAULT_TIMEOUT",
    "CallPolicy",
    "DeadlineExceeded",
    "ModelCallError",
    "ModelTimeoutError",
    "acall_with_policy",
    "call_with_policy",
    "env_timeout",
    "is_retryable",
    "retry_after",
]

T = TypeVar("T")

DEFAULT_TIMEOUT = 120.0
_FIRST_DELAY, _MAX_DELAY = 1.0, 30.0
_RETRY_STATUS = frozenset({408, 409, 425, 429})
_RETRY_NAMES = frozenset(
    {"APIConnectionError", "APITimeoutError", "TransportError", "TimeoutException"}
)


class ModelCallError(RuntimeError):
    """A model call failed for good (after its retries, or at the tree's deadline)."""


class ModelTimeoutError(TimeoutError):
    """One attempt ran past its time limit."""


def env_timeout() -> float:
    """``RLM_LLM_TIMEOUT`` (seconds) or :data:`DEFAULT_TIMEOUT`; what provider clients get."""
    raw = os.environ.get("RLM_LLM_TIMEOUT", "").strip()
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        raise ValueError(f"RLM_LLM_TIMEOUT must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"RLM_LLM_TIMEOUT must be > 0, got {raw!r}")
    return value


def model_timeout(model: Any) -> float:
    """The timeout the model's own client was built with (``request_timeout`` of the OpenAI
    family, ``client_kwargs["timeout"]`` of Ollama), else :func:`env_timeout`."""
    value = getattr(model, "request_timeout", None)
    if value is None:
        value = (getattr(model, "client_kwargs", None) or {}).get("timeout")
    return float(value) if isinstance(value, (int, float)) and value > 0 else env_timeout()


def where(model: Any) -> str:
    """``name at URL`` for error messages: which model, and which host was tried."""
    name = getattr(model, "model_name", None) or getattr(model, "model", None)
    name = name if isinstance(name, str) and name else type(model).__name__
    url = getattr(model, "openai_api_base", None) or getattr(model, "base_url", None)
    if url is None and type(model).__name__ == "ChatOpenAI":
        url = "https://api.openai.com/v1"
    if url is None and type(model).__name__ == "ChatGroq":
        url = getattr(model, "groq_api_base", None) or "https://api.groq.com"
    return f"{name} at {url}" if url else str(name)


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def is_retryable(exc: BaseException) -> bool:
    """Whether ``exc`` may pass on a later attempt: 429, 408, 409, 425, 5xx, connection
    errors and timeouts; never a 4xx such as a bad key or a bad request."""
    status = _status(exc)
    if status is not None:
        return status in _RETRY_STATUS or status >= 500
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    return any(c.__name__ in _RETRY_NAMES for c in type(exc).__mro__)


def retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked to wait (``retry-after-ms``, ``retry-after`` in seconds or
    as an HTTP date), or None."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms:
            return max(0.0, float(ms) / 1000)
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, AttributeError):
        return None


@dataclass(frozen=True)
class CallPolicy:
    """How long one call may take and how long it may be retried.

    ``timeout`` is per attempt (None: the model client's own timeout); ``deadline`` is an
    absolute ``time.monotonic()`` value for the whole tree (None: none).
    """

    timeout: float | None = None
    retry_seconds: float = 60.0
    deadline: float | None = None
    clock: Callable[[], float] = time.monotonic

    def attempt_limit(self, model: Any) -> tuple[float, bool]:
        """Seconds the next attempt may take, and whether the deadline is what limits it."""
        limit = self.timeout if self.timeout is not None else model_timeout(model)
        if self.deadline is None:
            return limit, False
        left = max(0.0, self.deadline - self.clock())
        return (left, True) if left <= limit else (limit, False)

    def next_delay(self, attempt: int, exc: BaseException, first_failure: float) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up."""
        if not is_retryable(exc) or self.retry_seconds <= 0:
            return None
        delay = random.uniform(0, min(_MAX_DELAY, _FIRST_DELAY * 2**attempt))
        asked = retry_after(exc)
        if asked is not None:
            delay = asked + random.uniform(0, 0.25)
        now = self.clock()
        if now + delay - first_failure > self.retry_seconds:
            return None
        if self.deadline is not None and now + delay >= self.deadline:
            return None
        return delay


class DeadlineExceeded(BudgetExhausted):
    """The tree's ``max_seconds`` deadline stopped a model call in flight."""


def _at_deadline(model: Any, exc: BaseException) -> DeadlineExceeded:
    return DeadlineExceeded(
        f"budget exhausted: max_seconds reached while waiting for {where(model)} ({exc})"
    )


def _failure(model: Any, exc: BaseException, attempts: int) -> ModelCallError:
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    return ModelCallError(
        f"model call to {where(model)} failed{tries}: {type(exc).__name__}: {exc}"
    )


def _run_bounded(fn: Callable[[], T], seconds: float) -> T:
    """``fn()`` on a daemon thread (with this thread's contextvars: config, callbacks, stream
    writer), abandoned after ``seconds``."""
    box: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
    ctx = contextvars.copy_context()

    def target() -> None:
        try:
            box.put((True, ctx.run(fn)))
        except BaseException as exc:
            box.put((False, exc))

    threading.Thread(target=target, name="rlm-model-call", daemon=True).start()
    try:
        ok, value = box.get(timeout=seconds)
    except queue.Empty:
        raise ModelTimeoutError(f"no reply within {seconds:.1f} s") from None
    if ok:
        return value
    raise value


def call_with_policy(model: Any, fn: Callable[[], T], policy: CallPolicy) -> T:
    """``fn()`` (one call to ``model``) under ``policy``'s time limits and retries."""
    attempt, first_failure = 0, None
    while True:
        limit, by_deadline = policy.attempt_limit(model)
        try:
            if limit <= 0:
                raise ModelTimeoutError("the tree's max_seconds deadline has passed")
            return _run_bounded(fn, limit)
        except GraphBubbleUp:
            raise
        except Exception as exc:
            if by_deadline and isinstance(exc, ModelTimeoutError):
                raise _at_deadline(model, exc) from exc
            first_failure = first_failure if first_failure is not None else policy.clock()
            delay = policy.next_delay(attempt, exc, first_failure)
            if delay is None:
                raise _failure(model, exc, attempt + 1) from exc
            time.sleep(delay)
            attempt += 1


async def acall_with_policy(model: Any, fn: Callable[[], Awaitable[T]], policy: CallPolicy) -> T:
    """:func:`call_with_policy` for async calls: an attempt past its limit is cancelled."""
    attempt, first_failure = 0, None
    while True:
        limit, by_deadline = policy.attempt_limit(model)
        try:
            if limit <= 0:
                raise ModelTimeoutError("the tree's max_seconds deadline has passed")
            try:
                return await asyncio.wait_for(fn(), limit)
            except asyncio.TimeoutError:
                raise ModelTimeoutError(f"no reply within {limit:.1f} s") from None
        except GraphBubbleUp:
            raise
        except Exception as exc:
            if by_deadline and isinstance(exc, ModelTimeoutError):
                raise _at_deadline(model, exc) from exc
            first_failure = first_failure if first_failure is not None else policy.clock()
            delay = policy.next_delay(attempt, exc, first_failure)
            if delay is None:
                raise _failure(model, exc, attempt + 1) from exc
            await asyncio.sleep(delay)
            attempt += 1
