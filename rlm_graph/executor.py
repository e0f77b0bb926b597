"""Where code blocks run: the interface the loop needs, and the default (the real sandbox).

``build_graph(executor=...)`` takes any :data:`ExecutorFactory`: a callable that receives an
:class:`ExecutorSpec` and returns an :class:`Executor`. :class:`rlm_graph.sandbox.Sandbox` is
the one used by default; graph tests that do not need a process can pass an in-process fake.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rlm_graph.context import SandboxMode


class BlockOutcome(Protocol):
    """What one block produced (:class:`rlm_graph.sandbox.ExecResult` has these fields)."""

    output: str
    output_chars: int
    error: str | None
    final_answer: str | None
    timed_out: bool
    restarted: bool
    seconds: float


class Executor(Protocol):
    """A persistent REPL where ``context`` is the payload: variables live across blocks."""

    #: Seconds the next block may run; the loop lowers it to the tree's remaining time.
    exec_timeout: float

    def run(self, code: str) -> BlockOutcome:
        """Run one block and return what it produced."""

    async def arun(self, code: str) -> BlockOutcome:
        """:meth:`run` for async runs; cancelling it stops the block."""

    def close(self) -> None:
        """Release every process and file (idempotent)."""


@dataclass(frozen=True)
class ExecutorSpec:
    """Everything an executor for one run needs."""

    #: The payload's value; for the default factory (:func:`streams_payload`), a stored
    #: payload comes as a :class:`rlm_graph.sandbox.payload.PayloadStream` over its parts,
    #: streamed into the sandbox so the host never holds all of it.
    payload: Any
    query: str
    #: Host functions callable from code: ``llm_query(prompt)``, ``rlm_query(query, context)``.
    handlers: Mapping[str, Callable[..., Any]]
    mode: SandboxMode
    exec_timeout: float
    max_output_chars: int
    max_concurrency: int
    #: Exceptions a handler raises that must leave ``run()`` unchanged (LangGraph interrupts).
    passthrough_exceptions: tuple[type[BaseException], ...]
    #: The run's own tools, ``{"name", "doc"}`` each, served by the ``call_tool`` handler.
    tools: Sequence[Mapping[str, str]] = ()


ExecutorFactory = Callable[[ExecutorSpec], Executor]


def check_mode(mode: SandboxMode) -> None:
    """Raise a one-line ``SandboxError`` now when ``mode`` cannot run on this host."""
    if mode == "strict":
        from rlm_graph.sandbox.strict import check_available

        check_available()


def sandbox_executor(spec: ExecutorSpec) -> Executor:
    """The default factory: a real :class:`rlm_graph.sandbox.Sandbox` (a worker process)."""
    from rlm_graph.sandbox import Sandbox  # lazy: only runs that execute code need it

    sandbox = Sandbox(
        spec.payload,
        spec.query,
        handlers=spec.handlers,
        mode=spec.mode,
        exec_timeout=spec.exec_timeout,
        max_output_chars=spec.max_output_chars,
        max_concurrency=spec.max_concurrency,
        tools=spec.tools,
    )
    sandbox.passthrough_exceptions = (
        *sandbox.passthrough_exceptions,
        *spec.passthrough_exceptions,
    )
    return sandbox


def streams_payload(factory: ExecutorFactory) -> bool:
    """Whether ``factory`` takes a stored payload as a stream (the sandbox does; any other
    executor gets the value, read off the event loop)."""
    return factory is sandbox_executor
