"""One body for sync and async nodes: a node is a generator that yields the blocking steps.

A node body yields :class:`Step` objects (a model call, a code block) and receives each one's
result, or has its exception thrown in at the ``yield``. :class:`LoopNode` drives the same body
with ``invoke`` (calling each step) or ``ainvoke`` (awaiting it), so an async run's cancellation
stops the model call or block in flight. When a body fails (cancellation included) the node's
``on_failure`` releases the run's live objects; LangGraph's control flow (``GraphBubbleUp``:
interrupts) passes through untouched, keeping the sandbox for the resume.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config
from langgraph.errors import GraphBubbleUp

from rlm_graph.budget import Budget
from rlm_graph.context import Context
from rlm_graph.executor import BlockOutcome, Executor
from rlm_graph.model_calls import acall_model, call_model
from rlm_graph.spans import block_span


class Step(Protocol):
    """A blocking step of a node: called in sync runs, awaited in async ones."""

    def run(self) -> Any:
        """Do it, blocking."""

    async def arun(self) -> Any:
        """Do it, awaiting."""


@dataclass(frozen=True)
class ModelCall:
    """A budgeted model call; result ``(reply, usage)``."""

    budget: Budget
    model: BaseChatModel
    messages: Any
    #: The run's settings: the call's timeout and retries (the tree's deadline bounds it too).
    ctx: Context | None = None
    #: Tags of the call's tracing run, however the model was given.
    tags: tuple[str, ...] = ("rlm:root",)

    def run(self) -> Any:
        return call_model(self.budget, self.model, self.messages, self.ctx, tags=self.tags)

    async def arun(self) -> Any:
        return await acall_model(self.budget, self.model, self.messages, self.ctx, tags=self.tags)


@dataclass(frozen=True)
class RunBlock:
    """One code block in the run's executor; result a :class:`~rlm_graph.executor.BlockOutcome`."""

    executor: Executor
    code: str

    def run(self) -> BlockOutcome:
        with block_span(self.code) as span:  # sub-calls nest under the block's tracing run
            outcome = self.executor.run(self.code)
            span.end(outcome)
        return outcome

    async def arun(self) -> BlockOutcome:
        with block_span(self.code) as span:
            outcome = await self.executor.arun(self.code)
            span.end(outcome)
        return outcome


Body = Callable[[Any], Any]  # state -> update, or a generator of Steps returning the update


class LoopNode(Runnable[Any, Any]):
    """A graph node that runs ``body`` sync or async and calls ``on_failure(state)`` when the
    body fails. It adds no tracing run of its own: LangGraph already traces the node."""

    def __init__(self, name: str, body: Body, on_failure: Callable[[Any], None]) -> None:
        self.name = name
        self.body = body
        self.on_failure = on_failure

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Run the body, calling each step it yields."""
        token = var_child_runnable_config.set(config) if config is not None else None
        try:
            out = self.body(input)
            if not inspect.isgenerator(out):
                return out
            return _drive(out)  # type: ignore[arg-type]
        except GraphBubbleUp:
            raise
        except BaseException:
            self.on_failure(input)
            raise
        finally:
            if token is not None:
                var_child_runnable_config.reset(token)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Run the body, awaiting each step it yields."""
        # The body reads its config and runtime with get_config()/get_runtime(). LangGraph sets
        # them in the node's context, except for async nodes on Python 3.10 (no task context).
        token = var_child_runnable_config.set(config) if config is not None else None
        try:
            out = self.body(input)
            if not inspect.isgenerator(out):
                return out
            return await _adrive(out)  # type: ignore[arg-type]
        except GraphBubbleUp:
            raise
        except BaseException:
            self.on_failure(input)
            raise
        finally:
            if token is not None:
                var_child_runnable_config.reset(token)


# A step's exception is thrown into the body, which decides (e.g. a spent budget is an answer).


def _drive(body: Generator[Step, Any, Any]) -> Any:
    try:
        step = next(body)
        while True:
            try:
                value = step.run()
            except BaseException as exc:
                step = body.throw(exc)
            else:
                step = body.send(value)
    except StopIteration as stop:
        return stop.value


async def _adrive(body: Generator[Step, Any, Any]) -> Any:
    try:
        step = next(body)
        while True:
            try:
                value = await step.arun()
            except BaseException as exc:
                step = body.throw(exc)
            else:
                step = body.send(value)
    except StopIteration as stop:
        return stop.value
