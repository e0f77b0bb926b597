"""The :class:`Sandbox`: a persistent, isolated Python REPL in a separate process.

Process tree: the host starts one *zygote* per sandbox (a fresh session, inside a per-sandbox pids
cgroup when available). The zygote loads ``context`` once and forks workers on request; each worker
runs in its own session/process group, so a kill takes its grandchildren with it, and a restart is
one more fork (no payload reload).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

from . import hostguard
from .block import BlockLoop
from .callbacks import CallbackRun, Handler, available_callbacks
from .channel import WorkerHandle
from .errors import PayloadError, SandboxError
from .output import CappedOutput
from .payload import check_payload
from .resources import Resources, lost_variables_notice
from .result import ExecResult
from .zygote import ZygoteDied, describe_wait_status

Mode = Literal["process", "strict"]
T = TypeVar("T")


class Sandbox:
    """An isolated, persistent Python REPL where the run's payload is the variable ``context``.

    Every block given to :meth:`run` executes in the same worker process, so variables persist
    between blocks. The worker is a separate CPython process; ``"process"`` mode isolates crashes
    and resources (time, memory, processes, output) but is not a security boundary, ``"strict"``
    additionally confines the worker (see :mod:`rlm_graph.sandbox.strict`).

    Args:
        context: the payload: ``str`` or JSON-like values (``list``, ``dict``, numbers, ``bool``,
            ``None``, nested). Anything else raises :class:`PayloadError`.
        query: the run's question, available as ``query``.
        handlers: host callables ``"llm_query"`` and ``"rlm_query"`` behind the worker's functions.
        mode: ``"process"`` (default) or ``"strict"``.
        exec_timeout: seconds per block, not counting time spent waiting on host callbacks.
        max_output_chars: output kept per block (head and tail); the true length is reported.
        max_concurrency: items of a batched callback running at once on the host.
        memory_limit_mb: address space a worker may add on top of what the loaded ``context``
            takes; ``None`` sizes it from the payload (1 GiB + 3x the payload's loaded size).
        max_processes: processes the sandbox may have at once (cgroup ``pids.max``, or
            RLIMIT_NPROC headroom for non-root users).
    """

    #: Exception types a handler may raise to abort the block and leave :meth:`run` unchanged
    #: (the graph adds LangGraph's ``GraphBubbleUp``).
    passthrough_exceptions: tuple[type[BaseException], ...] = ()
    #: Largest frame the host accepts from a worker.
    max_frame_bytes: int = 256 << 20
    #: Seconds between the interrupt (SIGINT) and the kill of a block that overran its time.
    interrupt_grace: float = 0.5
    #: Callbacks that may be in flight at once; more are refused with an error.
    max_in_flight: int = 256
    #: Decoded size (estimated, bytes) of the arguments of callbacks in flight at once; a call
    #: that would exceed it is refused with an error, unless it is the only one.
    max_bytes_in_flight: int = 512 << 20
    #: Seconds allowed for the zygote to load the payload.
    start_timeout: float = 120.0
    #: CPU seconds a worker may use between the end of a block and the start of the next (all
    #: threads together); past it the worker is replaced (threads must end with their block).
    idle_cpu_seconds: float = 2.0
    #: Process mode: fork new zygotes from a shared warm template process instead of starting
    #: an interpreter per sandbox (see :mod:`rlm_graph.sandbox.template`).
    fork_from_template: bool = True
    #: Process mode: make the host process non-dumpable (``PR_SET_DUMPABLE=0``) and zero its
    #: initial environment block, once for the whole process, so that workers cannot read its
    #: environment or memory or take its fds (see :mod:`rlm_graph.sandbox.hostguard`).
    #: Debuggers attaching to the host then need ``CAP_SYS_PTRACE``.
    protect_host: bool = True

    def __init__(
        self,
        context: Any = None,
        query: str = "",
        *,
        handlers: Mapping[str, Handler] | None = None,
        mode: Mode = "process",
        exec_timeout: float = 60.0,
        max_output_chars: int = 20_000,
        max_concurrency: int = 8,
        memory_limit_mb: int | None = None,
        max_processes: int = 256,
    ) -> None:
        if mode not in ("process", "strict"):
            raise ValueError(f"mode must be 'process' or 'strict', not {mode!r}")
        check_payload(context)
        self.context = context
        self.query = str(query)
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self.mode: Mode = mode
        self.exec_timeout = float(exec_timeout)
        self.max_output_chars = int(max_output_chars)
        self.max_concurrency = int(max_concurrency)
        self.memory_limit_mb = memory_limit_mb
        self.max_processes = int(max_processes)
        self._res = Resources(mode=mode, max_processes=self.max_processes)
        self._run_lock = threading.Lock()
        self._closed = False
        self._abort = threading.Event()
        self._notice: str | None = None
        # Safety net: processes, scratch dir and cgroup go away even if close() is never called.
        self._finalizer = weakref.finalize(self, self._res.close)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the zygote and the first worker now (otherwise :meth:`run` does it lazily)."""
        with self._run_lock:
            self._ensure_worker()

    def close(self) -> None:
        """Kill every process of the sandbox and remove its scratch dir and cgroup (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._abort.set()
        # Kill first so a run() in another thread sees its worker die and returns.
        self._res.kill_processes()
        self._res.wake()
        locked = self._run_lock.acquire(timeout=10)
        try:
            self._finalizer()
        finally:
            if locked:
                self._run_lock.release()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await _in_thread(self.close)

    async def arun(self, code: str) -> ExecResult:
        """:meth:`run` on a thread of its own; cancelling it stops the block (variables are lost).

        A dedicated thread, not the loop's default executor: nested runs (a child RLM inside a
        callback) would otherwise exhaust that small pool and deadlock.
        """
        return await _in_thread(self.run, code, on_cancel=self._cancel_block)

    def _cancel_block(self) -> None:
        self._abort.set()
        self._res.wake()

    # -- running code ---------------------------------------------------------------------------
    def run(self, code: str) -> ExecResult:
        """Execute one block of Python in the worker and return what it produced."""
        with self._run_lock:
            if self._closed:
                raise SandboxError("the sandbox is closed")
            self._abort.clear()
            notice, self._notice = self._notice, None
            restarted = notice is not None
            try:
                worker = self._ensure_worker()
            except ZygoteDied as exc:
                worker = self._full_restart(exc)
                restarted, notice = True, _join(notice, self._restart_text(str(exc)))
            result = self._execute(worker, code)
            if restarted:
                result.restarted = True
                result.error = _join(notice, result.error)
            return result

    def _execute(self, worker: WorkerHandle, code: str) -> ExecResult:
        out = CappedOutput(self.max_output_chars)
        calls = CallbackRun(
            self.handlers,
            max_concurrency=self.max_concurrency,
            max_in_flight=self.max_in_flight,
            max_bytes_in_flight=self.max_bytes_in_flight,
            passthrough=self.passthrough_exceptions,
            wake=self._res.wake,
        )
        loop = BlockLoop(
            worker,
            calls,
            out,
            wake_fd=self._res.wake_r,
            interrupt=lambda: self._interrupt(worker),
            abort=self._abort,
            exec_timeout=self.exec_timeout,
            interrupt_grace=self.interrupt_grace,
        )
        self._res.set_cpu_budget(worker, self.block_cpu_seconds(), "block")
        outcome = loop.run(code)
        error = outcome.error
        restarted = False
        if outcome.ending == "done":
            self._res.set_cpu_budget(worker, self.idle_cpu_seconds, "idle")
        if outcome.ending == "aborted":
            self._kill_and_restart(worker, lazy=True)
            error, restarted = "the block was cancelled; the worker was stopped", True
        elif outcome.ending != "done":
            status = self._kill_and_restart(worker, lazy=outcome.escaped is not None)
            restarted = True
            if outcome.ending == "unresponsive" and outcome.timed_out:
                reason = (
                    f"TimeoutError: the block ran longer than {self.exec_timeout:g} s and did "
                    "not stop when interrupted, so the worker was killed"
                )
            else:
                reason = f"{outcome.reason}: the worker {status}"
            for note in (self._res.kill_reason, self._res.memory_note()):
                if note:
                    reason = f"{reason}; {note}"
            error = _join(error, self._restart_text(reason))
        elif outcome.timed_out:
            # Whatever the overrunning block started (a fork bomb, a hung subprocess) goes.
            with contextlib.suppress(SandboxError):
                self._res.kill_worker_children(worker)
            error = _join(
                f"TimeoutError: the block ran longer than {self.exec_timeout:g} s and was "
                "interrupted; your variables are kept, processes it started were killed.",
                error,
            )
        if outcome.escaped is not None:
            raise outcome.escaped
        return ExecResult(
            output=out.text(),
            output_chars=out.total_chars,
            error=error,
            final_answer=outcome.final_answer,
            timed_out=outcome.timed_out,
            restarted=restarted,
            seconds=time.monotonic() - loop.started,
            callback_seconds=calls.waited(),
        )

    def block_cpu_seconds(self) -> float:
        """CPU a worker may use during one block, all threads together: ``exec_timeout`` on
        every CPU this process may use, plus one second."""
        return self.exec_timeout * len(os.sched_getaffinity(0)) + 1.0

    def _restart_text(self, reason: str) -> str:
        if self._closed:
            return f"{reason}. The sandbox is closed."
        return f"{reason}. {lost_variables_notice()}"

    # -- processes ------------------------------------------------------------------------------
    def _ensure_worker(self) -> WorkerHandle:
        if self._closed:
            raise SandboxError("the sandbox is closed")
        if self._res.zygote is None or not self._res.zygote.alive():
            if self._res.zygote is not None:
                raise ZygoteDied(self._res.zygote.death_reason())
            if self.mode == "process" and self.protect_host:
                hostguard.protect_host()
            self._res.start_zygote(
                self.context,
                memory_limit_mb=self.memory_limit_mb,
                timeout=self.start_timeout,
                use_template=self.fork_from_template,
            )
        if self._res.worker is None:
            self._res.fork_worker(self._fork_params())
        assert self._res.worker is not None
        return self._res.worker

    def _fork_params(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "callbacks": available_callbacks(self.handlers),
            "max_frame_bytes": self.max_frame_bytes,
        }

    def _full_restart(self, exc: BaseException) -> WorkerHandle:
        self._res.stop_zygote()
        try:
            return self._ensure_worker()
        except ZygoteDied as again:
            raise SandboxError(f"the sandbox could not be restarted: {again}") from exc

    def _interrupt(self, worker: WorkerHandle) -> None:
        with contextlib.suppress(SandboxError, OSError):
            self._res.signal_worker(worker, signal.SIGINT)

    def _kill_and_restart(self, worker: WorkerHandle, *, lazy: bool) -> str:
        """Kill the worker's process group; fork a fresh worker unless ``lazy``."""
        try:
            status = self._res.kill_worker(worker)
        except ZygoteDied:
            status = None
            self._res.stop_zygote()
        if lazy:
            self._notice = self._restart_text("The previous block was stopped")
        elif not self._closed:
            try:
                self._ensure_worker()
            except ZygoteDied as exc:
                self._full_restart(exc)
        return describe_wait_status(status)


async def _in_thread(
    func: Callable[..., T], *args: Any, on_cancel: Callable[[], None] | None = None
) -> T:
    """Run ``func`` on a new thread with this task's contextvars; wait for it even if cancelled."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():  # cancelled meanwhile
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def target() -> None:
        value: Any = None
        error: BaseException | None = None
        try:
            value = context.run(func, *args)
        except BaseException as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=target, name="rlm-sandbox-arun", daemon=True).start()
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        if on_cancel is not None:
            on_cancel()
        # Let the thread finish (it returns promptly once cancelled) before re-raising.
        with contextlib.suppress(BaseException):
            await future
        raise


def _join(*parts: str | None) -> str | None:
    text = "\n".join(p for p in parts if p)
    return text or None


__all__ = ["ExecResult", "Mode", "PayloadError", "Sandbox", "SandboxError"]
