"""The host functions a run's code calls from the sandbox: ``llm_query`` and ``rlm_query``.

They run on sandbox handler threads, which carry copies of the calling node's contextvars: the
node's LangGraph config (so a child run nests under it in streaming, tracing and checkpoints)
and :data:`rlm_graph.runs.current_iteration`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables.config import patch_config
from langgraph.config import get_config
from langgraph.graph.state import CompiledStateGraph

from rlm_graph.budget import BudgetExhausted
from rlm_graph.events import preview
from rlm_graph.model_calls import call_model, message_text
from rlm_graph.prompts import subcall_prompt
from rlm_graph.runs import Run, new_id

#: Tag of every sub-call's tracing run, however the sub-model was given (spec or instance).
SUB_TAG = "rlm:sub"


class HostFunctions:
    """``llm_query`` and ``rlm_query`` for one run; ``graph`` is the compiled graph the run
    belongs to, which ``rlm_query`` runs again one level deeper."""

    def __init__(
        self,
        run: Run,
        graph: CompiledStateGraph[Any, Any, Any, Any],
        sub_model: Callable[[], BaseChatModel],
        *,
        put_payload: Callable[[Any], Any] | None = None,
    ) -> None:
        self.run = run
        self.graph = graph
        self.sub_model = sub_model
        #: Stores a child's payload and returns its reference (children get it by reference).
        self.put_payload = put_payload

    def as_dict(self) -> dict[str, Callable[..., Any]]:
        """Mapping for the executor's ``handlers``."""
        return {"llm_query": self.llm_query, "rlm_query": self.rlm_query}

    def llm_query(self, prompt: str) -> str:
        """A plain sub-model call, budgeted and counted in this run's usage."""
        return self._plain(str(prompt), function="llm_query")

    def rlm_query(self, query: str, context: Any = None) -> str:
        """Run the same graph on a sub-task one level deeper (plain call past max_depth)."""
        if not isinstance(query, str) or not query.strip():
            raise ValueError("rlm_query needs a non-empty query string")
        run = self.run
        depth = run.info.depth + 1
        if depth > run.ctx.max_depth:
            return self._plain(subcall_prompt(query, context), function="rlm_query")
        reason = run.budget.exhausted()
        if reason:
            return f"Error: budget exhausted: {reason}"
        child_id = new_id()
        child_input: dict[str, Any] = {"query": query}
        if context is not None and self.put_payload is not None:
            child_input["context_ref"] = self.put_payload(context)
        elif context is not None:
            child_input["context"] = context
        with subcall_events(run, "rlm", "rlm_query", query, child_id) as outcome:
            out = self.graph.invoke(
                child_input, self._child_config(child_id), context=dataclasses.asdict(run.ctx)
            )
            run.add_usage(out["usage"])
            if out.get("stopped_reason") == "error":
                # A child whose model failed for good: an exception for the code, as for
                # llm_query (a batch slot says "Error: ...").
                raise RuntimeError(f"child run failed: {out.get('error')}")
            outcome["answer"] = str(out["answer"])
        return str(outcome["answer"])

    def _child_config(self, child_id: str) -> Any:
        """The calling node's config, one level deeper, naming this run as the parent."""
        parent = get_config()
        run = self.run
        return patch_config(
            parent,
            recursion_limit=max(parent.get("recursion_limit", 25), 4 * run.ctx.max_iterations + 8),
            configurable={
                **(parent.get("configurable") or {}),
                "rlm_depth": run.info.depth + 1,
                "rlm_parent_run": run.info.run_id,
                "rlm_run_id": child_id,
            },
        )

    def _plain(self, prompt: str, *, function: Literal["llm_query", "rlm_query"]) -> str:
        with subcall_events(self.run, "llm", function, prompt) as outcome:
            try:
                reply, usage = call_model(
                    self.run.budget, self.sub_model(), prompt, self.run.ctx, tags=[SUB_TAG]
                )
            except BudgetExhausted as exc:
                outcome.update(answer=f"Error: {exc}", error=str(exc))
            else:
                self.run.add_usage(usage)
                outcome["answer"] = message_text(reply)
        return str(outcome["answer"])


@contextlib.contextmanager
def subcall_events(
    run: Run,
    kind: Literal["llm", "rlm", "tool"],
    function: str,
    prompt: str,
    child_run_id: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Emit subcall_start and subcall_end around a sub-call; the body sets its outcome.

    ``kind`` is what ran (a plain model call, a child run or a tool), ``function`` what the
    code called (``llm_query``, ``rlm_query`` or the tool's name): ``rlm_query`` past
    ``max_depth`` is ``kind="llm"``.
    """
    call_id = new_id()
    run.emit("subcall_start", call_id=call_id, kind=kind, function=function, prompt=preview(prompt))
    start = time.monotonic()
    outcome: dict[str, Any] = {"answer": "", "error": None}
    try:
        yield outcome
    except BaseException as exc:
        outcome["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        run.emit(
            "subcall_end",
            call_id=call_id,
            kind=kind,
            function=function,
            seconds=round(time.monotonic() - start, 4),
            answer=preview(outcome["answer"]),
            error=outcome["error"],
            child_run_id=child_run_id,
        )
