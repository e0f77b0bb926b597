"""Host side of the worker's callbacks (``llm_query``, ``rlm_query`` and their batched forms)."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .channel import WorkerHandle
from .child.tables import CALLBACK_HANDLERS, CALLBACK_NAMES

Handler = Callable[..., Any]

SINGLE = {k: v for k, v in CALLBACK_HANDLERS.items() if not k.endswith("_batched")}
BATCHED = {k: v for k, v in CALLBACK_HANDLERS.items() if k.endswith("_batched")}


def available_callbacks(handlers: Mapping[str, Handler]) -> list[str]:
    """Worker-side names that have a host handler behind them."""
    return [name for name in CALLBACK_NAMES if CALLBACK_HANDLERS[name] in handlers]


class CallbackRun:
    """Serves the callbacks of one block; tracks how long the block waited on them.

    Each call runs on its own thread inside a copy of the ``contextvars`` context of the thread
    that called :meth:`Sandbox.run`, so LangGraph's config and stream writer are visible.
    """

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        *,
        max_concurrency: int,
        max_in_flight: int,
        max_bytes_in_flight: int = 1 << 62,
        passthrough: tuple[type[BaseException], ...],
        wake: Callable[[], None],
    ) -> None:
        self.handlers = handlers
        self.max_concurrency = max(1, max_concurrency)
        self.max_in_flight = max_in_flight
        self.max_bytes_in_flight = max_bytes_in_flight
        self.bytes_in_flight = 0
        self.passthrough = passthrough
        self.wake = wake
        self.context = contextvars.copy_context()
        self.lock = threading.Lock()
        self.in_flight = 0
        self._paused_since = 0.0
        self._paused_total = 0.0
        self.escaped: BaseException | None = None

    def waited(self, now: float | None = None) -> float:
        """Seconds during which at least one callback was running."""
        with self.lock:
            extra = 0.0
            if self.in_flight:
                extra = (time.monotonic() if now is None else now) - self._paused_since
            return self._paused_total + extra

    def busy(self) -> bool:
        """Whether a callback is running right now (the block's clock is stopped)."""
        with self.lock:
            return self.in_flight > 0

    def dispatch(self, msg: Mapping[str, Any], worker: WorkerHandle, size: int = 0) -> None:
        """Start serving one ``call`` frame from the worker.

        ``size`` is what its decoded arguments take (estimated); calls are refused while
        ``max_bytes_in_flight`` would be exceeded, unless none is running.
        """
        call_id = msg.get("id")
        name = str(msg.get("name"))
        args = msg.get("args")
        if name not in CALLBACK_NAMES or not isinstance(args, list):
            worker.send(
                {"op": "reply", "id": call_id, "ok": False, "error": f"no callback named {name!r}"}
            )
            return
        refusal = self._admit(size)
        if refusal is not None:
            worker.send({"op": "reply", "id": call_id, "ok": False, "error": refusal})
            return
        thread = threading.Thread(
            target=self.context.copy().run,
            args=(self._serve, name, args, call_id, worker, size),
            name=f"rlm-callback-{name}",
            daemon=True,
        )
        thread.start()

    def _admit(self, size: int) -> str | None:
        """Count a new call in, or say why it is refused."""
        with self.lock:
            if self.in_flight >= self.max_in_flight:
                return (
                    f"too many concurrent callbacks (limit {self.max_in_flight}); "
                    "use llm_query_batched / rlm_query_batched for large fan-outs"
                )
            if self.in_flight and self.bytes_in_flight + size > self.max_bytes_in_flight:
                return (
                    f"too many bytes in flight in callbacks: {self.bytes_in_flight:,} bytes of "
                    f"arguments are being served, and this call adds about {size:,} (limit "
                    f"{self.max_bytes_in_flight:,}); wait for results or pass smaller slices"
                )
            if self.in_flight == 0:
                self._paused_since = time.monotonic()
            self.in_flight += 1
            self.bytes_in_flight += size
            return None

    def _serve(
        self, name: str, args: list[Any], call_id: Any, worker: WorkerHandle, size: int = 0
    ) -> None:
        try:
            try:
                value = self._invoke(name, args)
            except self.passthrough as exc:
                with self.lock:
                    if self.escaped is None:
                        self.escaped = exc
                return
            except BaseException as exc:  # reported to the model code
                worker.send({"op": "reply", "id": call_id, "ok": False, "error": _describe(exc)})
                return
            try:
                worker.send({"op": "reply", "id": call_id, "ok": True, "value": value})
            except (TypeError, ValueError) as exc:
                worker.send({"op": "reply", "id": call_id, "ok": False, "error": _describe(exc)})
        finally:
            with self.lock:
                self.in_flight -= 1
                self.bytes_in_flight -= size
                if self.in_flight == 0:
                    self._paused_total += time.monotonic() - self._paused_since
            self.wake()

    def _invoke(self, name: str, args: list[Any]) -> Any:
        if name in SINGLE:
            handler = self._handler(SINGLE[name])
            if name == "llm_query":
                return str(handler(*args[:1]))
            return str(handler(*args[:2]))
        handler = self._handler(BATCHED[name])
        items = args[0] if args and isinstance(args[0], list) else []
        if name == "llm_query_batched":
            calls = [(item,) for item in items]
        else:
            calls = [tuple(item[:2]) if isinstance(item, list) else (item, None) for item in items]
        return self._batch(handler, calls)

    def _handler(self, base: str) -> Handler:
        handler = self.handlers.get(base)
        if handler is None:
            raise RuntimeError(f"{base} is not available in this sandbox")
        return handler

    def _batch(self, handler: Handler, calls: list[tuple[Any, ...]]) -> list[str]:
        if not calls:
            return []
        results: list[str] = [""] * len(calls)
        context = contextvars.copy_context()
        pool = ThreadPoolExecutor(
            max_workers=min(self.max_concurrency, len(calls)), thread_name_prefix="rlm-batch"
        )
        try:
            futures = [pool.submit(context.copy().run, handler, *call) for call in calls]
            for i, future in enumerate(futures):
                try:
                    results[i] = str(future.result())
                except self.passthrough:
                    raise
                except Exception as exc:  # one failing item must not fail the batch
                    results[i] = f"Error: {_describe(exc)}"
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return results


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
