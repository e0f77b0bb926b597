"""A human reviews code before it runs, at any depth: LangGraph's ``interrupt()`` in ``execute``.

With the setting ``approve="code"`` every reply's code, at every depth, waits for a decision;
with ``"subcalls"`` only the code of child runs (``rlm_query``) does. The interrupt's value
says what is asked (:func:`request`); the resume value is one of::

    {"action": "approve"}
    {"action": "edit", "code": "..."}        # this code runs instead; the model is told
    {"action": "reject", "message": "..."}   # nothing runs; the message is the observation

One interrupt covers all the blocks of a reply and comes before any of them runs, so when
LangGraph re-runs ``execute`` on resume no block has run yet: none runs twice. A child's
interrupt pauses the whole tree; resuming continues the child from its own checkpoint, and the
parent's block that called ``rlm_query`` runs again from its start (see the README's limits).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage
from langgraph.types import interrupt

from rlm_graph.model_calls import message_text
from rlm_graph.parsing import parse_reply
from rlm_graph.runs import Run, RunTable
from rlm_graph.state import State

ACTIONS = ("approve", "edit", "reject")


class ReviewError(ValueError):
    """A resume value that is not an approval decision; the message shows the accepted ones."""


@dataclass(frozen=True)
class Review:
    """What to run after review, and what to tell the model."""

    blocks: list[str]
    note: str | None = None
    rejection: str | None = None


def needs_review(mode: str | None, depth: int) -> bool:
    """Whether a run at ``depth`` waits for approval under setting ``mode``."""
    return mode == "code" or (mode == "subcalls" and depth > 0)


def path_of(run: Run, runs: RunTable) -> list[str]:
    """Run ids from the root to ``run`` (as far as this process knows them)."""
    path = [run.info.run_id]
    parent = run.info.parent_run_id
    while parent:
        path.insert(0, parent)
        found = runs.find(parent)
        parent = found.info.parent_run_id if found else None
    return path


def request(run: Run, state: State, path: list[str]) -> dict[str, Any]:
    """The interrupt's value: the code and where it comes from."""
    blocks = state["code_blocks"]
    return {
        "kind": "approve_code",
        "code": "\n\n".join(blocks),
        "blocks": list(blocks),
        "depth": run.info.depth,
        "path": path,
        "run_id": run.info.run_id,
        "iteration": state["iterations"],
        "query": state["query"],
        "actions": list(ACTIONS),
    }


def review(run: Run, state: State, runs: RunTable) -> Review:
    """Ask for a decision when the settings say so (``interrupt()``: the run pauses here)."""
    blocks = list(state["code_blocks"])
    if not needs_review(run.ctx.approve, run.info.depth):
        return Review(blocks, note=edited_note(state))
    decided = decide(interrupt(request(run, state, path_of(run, runs))), blocks)
    if decided.note is None and decided.rejection is None:
        return Review(decided.blocks, note=edited_note(state))
    return decided


def edited_note(state: State) -> str | None:
    """What to tell the model when the pending code is not what its last reply wrote: the
    thread was edited while paused (``graph.update_state(config, {"code_blocks": [...]})``)."""
    last = state["messages"][-1] if state["messages"] else None
    blocks = state["code_blocks"]
    if not isinstance(last, AIMessage) or parse_reply(message_text(last)).code_blocks == blocks:
        return None
    return _edited(blocks, "your code was changed while the run was paused")


def _edited(blocks: list[str], what: str) -> str:
    shown = "\n\n".join(f"```python\n{code}\n```" for code in blocks)
    return f"Note: {what}. This is the code that ran:\n{shown}"


def decide(decision: Any, blocks: list[str]) -> Review:
    """Turn a resume value into a :class:`Review` (:class:`ReviewError` if it is none)."""
    if isinstance(decision, str):
        decision = {"action": decision}
    action = decision.get("action") if isinstance(decision, Mapping) else None
    if action == "approve":
        return Review(blocks)
    if action == "edit" and isinstance(decision.get("code"), str) and decision["code"].strip():
        code = decision["code"]
        return Review([code], note=_edited([code], "a reviewer edited your code before it ran"))
    if action == "reject":
        message = str(decision.get("message") or "no reason given")
        return Review([], rejection=f"A reviewer rejected this code; it did not run: {message}")
    raise ReviewError(
        f"not an approval decision: {decision!r}; resume with {{'action': 'approve'}}, "
        "{'action': 'edit', 'code': '...'} or {'action': 'reject', 'message': '...'}"
    )


@dataclass
class Rejected:
    """The outcome of rejected code (a :class:`~rlm_graph.executor.BlockOutcome`): the
    reviewer's message is the output; nothing ran."""

    output: str
    error: str | None = None
    final_answer: str | None = None
    timed_out: bool = False
    restarted: bool = False
    seconds: float = 0.0
    output_chars: int = 0

    def __post_init__(self) -> None:
        self.output_chars = len(self.output)
