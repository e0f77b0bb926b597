"""Custom stream events (``stream_mode="custom"``), as documented in docs/ARCHITECTURE.md.

Every event carries ``event``, ``run_id``, ``parent_run_id``, ``depth``, ``iteration`` and ``t``
(seconds since the root run started); the CLI's live tree and ``--trace`` are built from these
alone, so the shapes below are a contract.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from typing_extensions import TypedDict

from rlm_graph.state import Usage

EventName = Literal[
    "run_start",
    "iteration_start",
    "model_reply",
    "code",
    "observation",
    "subcall_start",
    "subcall_end",
    "compaction",
    "dead_end",
    "final",
    "run_end",
]

EVENT_PREVIEW_CHARS = 200
THOUGHT_CHARS = 500


class BaseEvent(TypedDict):
    """Keys shared by every event."""

    event: EventName
    run_id: str
    parent_run_id: str | None
    depth: int
    iteration: int
    t: float


class RunStartEvent(BaseEvent):
    """A run (root or child) started."""

    query: str
    context_type: str
    context_chars: int
    strategy: Literal["rlm", "direct"]


class ModelReplyEvent(BaseEvent):
    """The run's model answered."""

    thought: str
    n_code_blocks: int
    has_final: bool
    seconds: float
    usage: Usage


class CodeEvent(BaseEvent):
    """A code block is about to run."""

    index: int
    code: str


class ObservationEvent(BaseEvent):
    """A code block finished."""

    index: int
    output: str
    output_chars: int
    error: str | None
    seconds: float
    timed_out: bool
    restarted: bool


class SubcallStartEvent(BaseEvent):
    """``llm_query`` / ``rlm_query`` / a tool started; for ``rlm`` the child's events follow.
    For ``kind="tool"``, ``function`` is the tool's name and ``prompt`` its JSON arguments."""

    call_id: str
    kind: Literal["llm", "rlm", "tool"]
    function: str
    prompt: str


class SubcallEndEvent(BaseEvent):
    """A sub-call finished (for a tool, ``answer`` is its result, as text)."""

    call_id: str
    kind: Literal["llm", "rlm", "tool"]
    function: str
    seconds: float
    answer: str
    error: str | None
    child_run_id: str | None


class CompactionEvent(BaseEvent):
    """The run's older iterations were replaced by a summary before this model call."""

    window_tokens: int
    tokens_before: int
    tokens_after: int
    messages_before: int
    messages_after: int
    summary: str
    #: Names of the REPL variables listed in the summary.
    variables: list[str]
    seconds: float


class DeadEndEvent(BaseEvent):
    """The iteration's reply was a dead end (its search found nothing, or it had neither code
    nor an answer): it leaves the history and the next call samples (:mod:`rlm_graph.dead_ends`);
    its blocks stay in the REPL."""

    retries_left: int
    #: ``"found_nothing"`` (the search found nothing) or ``"no_code"`` (neither code nor an
    #: answer).
    reason: str


class FinalEvent(BaseEvent):
    """The run produced its answer."""

    answer: str
    stopped_reason: str
    iterations: int
    error: str | None


class RunEndEvent(BaseEvent):
    """The run ended; ``usage`` includes its descendants."""

    usage: Usage
    seconds: float


EVENT_TYPES: dict[str, type[BaseEvent]] = {
    "run_start": RunStartEvent,
    "iteration_start": BaseEvent,
    "model_reply": ModelReplyEvent,
    "code": CodeEvent,
    "observation": ObservationEvent,
    "subcall_start": SubcallStartEvent,
    "subcall_end": SubcallEndEvent,
    "compaction": CompactionEvent,
    "dead_end": DeadEndEvent,
    "final": FinalEvent,
    "run_end": RunEndEvent,
}
"""The TypedDict of each event name (its keys are exactly the keys of the emitted dict)."""


def preview(text: str, limit: int = EVENT_PREVIEW_CHARS) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class RunInfo:
    """Identity of one run, stamped on each of its events."""

    run_id: str
    parent_run_id: str | None
    depth: int
    clock: Callable[[], float]  # seconds since the root run started

    def emit(
        self,
        writer: Callable[[Any], None] | None,
        event: EventName,
        iteration: int,
        **fields: Any,
    ) -> None:
        """Send one event through the LangGraph stream writer (a no-op when not streaming)."""
        if writer is None:
            return
        payload: dict[str, Any] = {
            "event": event,
            "run_id": self.run_id,
            "parent_run_id": self.parent_run_id,
            "depth": self.depth,
            "iteration": iteration,
            "t": round(self.clock(), 4),
        }
        payload.update(fields)
        writer(payload)
