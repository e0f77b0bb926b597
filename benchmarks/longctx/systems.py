"""The three systems run on the same tasks: the RLM graph, the bare model, and ``rlms``.

Each system is a callable ``task -> Outcome``; model errors become an ``Outcome`` with
``error`` set, so one failure costs one row, not the run.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel

from benchmarks.longctx.tasks import Task

#: ``direct`` is the graph with ``strategy="direct"``: one call with the whole payload, what
#: ``strategy="auto"`` picks for a small payload (for measuring where that pays).
SYSTEMS: tuple[str, ...] = ("rlm", "direct", "bare", "rlms")
CHARS_PER_TOKEN = 3.5

BARE_TEMPLATE = (
    "Read the text below and answer the question after it.\n\n<text>\n{text}\n</text>\n\n"
    "Question: {query}\nAnswer concisely with just the answer."
)
CUT_MARK = (
    "\n[... input cut here: the first {kept:,} of {total:,} characters are shown; the rest did "
    "not fit the model's window ...]"
)


@dataclass
class Settings:
    """Run settings shared by the systems (CLI flags)."""

    max_iterations: int = 6
    max_seconds: float | None = 300.0
    max_llm_calls: int | None = None
    max_depth: int = 1
    exec_timeout: float = 60.0
    window_tokens: int = 8192
    answer_tokens: int = 512
    keep_messages: bool = False
    #: The ``rlm`` system's strategy: ``auto`` (what users get), or ``rlm`` forced.
    strategy: str = "auto"
    rlm_extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    """What one system did on one task."""

    answer: str | None
    seconds: float
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


System = Callable[[Task], Outcome]


def error_text(exc: BaseException) -> str:
    """One line naming the exception."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"[:500]


def rlm_system(
    model: str | BaseChatModel, settings: Settings, strategy: str | None = None
) -> System:
    """The RLM graph (``rlm_graph.build_graph``), one invoke per task, with ``strategy`` (by
    default the settings')."""
    from rlm_graph import build_graph

    graph = build_graph(model=model)
    per_run: dict[str, Any] = {
        "max_iterations": settings.max_iterations,
        "max_seconds": settings.max_seconds,
        "max_llm_calls": settings.max_llm_calls,
        "max_depth": settings.max_depth,
        "exec_timeout": settings.exec_timeout,
        "strategy": strategy or settings.strategy,
        **settings.rlm_extra,
    }

    def run(task: Task) -> Outcome:
        start = time.perf_counter()
        try:
            out = graph.invoke({"query": task.query, "context": task.context}, context=per_run)
        except Exception as exc:
            return Outcome(None, time.perf_counter() - start, error=error_text(exc))
        usage = out.get("usage") or {}
        return Outcome(
            answer=out.get("answer"),
            seconds=time.perf_counter() - start,
            calls=int(usage.get("llm_calls", 0)),
            input_tokens=int(usage.get("input_tokens", 0)),
            output_tokens=int(usage.get("output_tokens", 0)),
            extra={
                **_rlm_extra(out, settings.keep_messages),
                "strategy": per_run["strategy"],
                **({"settings": settings.rlm_extra} if settings.rlm_extra else {}),
            },
        )

    return run


def _rlm_extra(out: dict[str, Any], keep_messages: bool) -> dict[str, Any]:
    extra = {
        "iterations": out.get("iterations"),
        "stopped_reason": out.get("stopped_reason"),
        "direct": _answered_directly(out),
    }
    if keep_messages:
        # The root conversation (constant-size prompts, not the input): for reading failures.
        extra["messages"] = [
            {"role": m.type, "content": m.content if isinstance(m.content, str) else str(m.content)}
            for m in out.get("messages", [])
        ]
    return extra


def _answered_directly(out: dict[str, Any]) -> bool:
    """Whether the run took the direct strategy (its conversation opens with that prompt)."""
    from rlm_graph.prompts import DIRECT_SYSTEM_PROMPT

    messages = out.get("messages") or []
    return bool(messages) and messages[0].content == DIRECT_SYSTEM_PROMPT


def bare_prompt(task: Task, settings: Settings, scale: float = 1.0) -> tuple[str, bool]:
    """The bare model's prompt and whether the input was cut to fit its window.

    The window is ``window_tokens`` minus ``answer_tokens``, at 3.5 characters per token,
    times ``scale`` (a retry after the server said the prompt was too long uses less).
    """
    budget = int(scale * CHARS_PER_TOKEN * (settings.window_tokens - settings.answer_tokens))
    room = budget - len(BARE_TEMPLATE) - len(task.query)
    text = task.context
    cut = len(text) > room
    if cut:
        mark = CUT_MARK.format(kept=0, total=len(text))
        kept = max(0, room - len(mark) - 8)
        text = text[:kept] + CUT_MARK.format(kept=kept, total=len(task.context))
    return BARE_TEMPLATE.format(text=text, query=task.query), cut


# Dense text (source code) takes more tokens per character than the 3.5 estimate; when the
# server refuses a prompt as too long, the cut is retried at these fractions of the window.
RETRY_SCALES: tuple[float, ...] = (1.0, 0.75, 0.5)
_TOO_LONG = re.compile(r"context|too long|exceed|maximum|n_ctx|token", re.IGNORECASE)


def bare_system(model: str | BaseChatModel, settings: Settings) -> System:
    """The model called once with the question and as much input as fits."""
    from rlm_graph.models import resolve_model

    chat = resolve_model(model)

    def run(task: Task) -> Outcome:
        start = time.perf_counter()
        for attempt, scale in enumerate(RETRY_SCALES, 1):
            prompt, cut = bare_prompt(task, settings, scale)
            try:
                reply = chat.invoke(prompt)
                break
            except Exception as exc:
                retry = cut and _TOO_LONG.search(str(exc)) and attempt < len(RETRY_SCALES)
                if not retry:
                    elapsed = time.perf_counter() - start
                    return Outcome(None, elapsed, calls=attempt, error=error_text(exc))
        usage = getattr(reply, "usage_metadata", None) or {}
        content = reply.content if isinstance(reply.content, str) else str(reply.content)
        return Outcome(
            answer=content.strip(),
            seconds=time.perf_counter() - start,
            calls=attempt,
            input_tokens=int(usage.get("input_tokens", 0)),
            output_tokens=int(usage.get("output_tokens", 0)),
            extra={"cut": cut, "prompt_chars": len(prompt), "window_scale": scale},
        )

    return run


def make_system(name: str, model: str | BaseChatModel, settings: Settings) -> System:
    """The system called ``name`` (one of :data:`SYSTEMS`)."""
    if name == "rlm":
        return rlm_system(model, settings)
    if name == "direct":
        return rlm_system(model, settings, strategy="direct")
    if name == "bare":
        return bare_system(model, settings)
    if name == "rlms":
        from benchmarks.longctx.rlms_system import rlms_system

        return rlms_system(model, settings)
    raise ValueError(f"unknown system {name!r}: choose from {', '.join(SYSTEMS)}")
