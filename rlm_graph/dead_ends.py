"""Dead ends: a reply the loop could not use is asked again, unseen, with sampling.

Two kinds: a reply whose search found nothing, and a reply with neither code nor an answer.
A small model shown either sends it again nearly word for word, whatever the message under it
says (hints, probes, a repeated-code notice, the correction; BENCHMARKS.md, issue 12). Asked
again from the state before that reply, greedy decoding would write the same reply, so the
retry samples at a low temperature: on the demo's dev seeds, 0.4 never gave the failed pattern
back in 12 samples, and 0.7 often broke the reply format.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import RemoveMessage

from rlm_graph import prompts
from rlm_graph.budget import Budget
from rlm_graph.context import Context
from rlm_graph.runs import Run
from rlm_graph.state import BlockResult, State

TEMPERATURE = 0.4


def allowed(setting: int | None, compact: bool) -> int:
    """Retries a run may use: the setting, or by default 1 for small models and 0 otherwise."""
    if setting is not None:
        return setting
    return 1 if compact else 0


def found_nothing(results: Sequence[BlockResult]) -> bool:
    """Whether a block's search found nothing (:func:`rlm_graph.prompts.found_nothing`)."""
    return any(prompts.found_nothing(r) for r in results)


def sampled(model: BaseChatModel, seed: int) -> BaseChatModel:
    """``model`` sampling at :data:`TEMPERATURE` (seeded where the model takes a seed); a model
    without a temperature field is returned as it is."""
    fields = type(model).model_fields
    update: dict[str, object] = {}
    if "temperature" in fields:
        update["temperature"] = TEMPERATURE
    if "seed" in fields:
        update["seed"] = seed
    return model.model_copy(update=update) if update else model


def reason(state: State) -> str | None:
    """Why the reply just run is a dead end, or None: ``"found_nothing"`` (its code's search
    found nothing) or ``"no_code"`` (neither code nor an answer, nor a Final Answer the loop
    refused with its own message: a placeholder, a guess questioned once)."""
    if not state["code_blocks"]:
        if state.get("feedback") or state.get("answer_errors"):
            return None
        return "no_code"
    results = state["results"]
    if all(r["final_answer"] is None for r in results) and found_nothing(results):
        return "found_nothing"
    return None


def ask_again(state: State, ctx: Context, budget: Budget) -> bool:
    """Whether the reply just run is a dead end the run may ask again (retries, replies and
    budget left; not after a REPL rebuild, whose note the next observation must carry)."""
    return (
        state.get("dead_ends_left", 0) > 0
        and not state.get("replay_note")
        and state["iterations"] < ctx.max_iterations
        and not budget.exhausted()
        and reason(state) is not None
    )


def unseen(run: Run, state: State, best: str | None) -> dict[str, Any]:
    """The update that takes the reply out of the history and has the next call sample. Its
    blocks stay in the REPL and the journal (a rebuilt REPL replays them), and in the trace."""
    reply = state["messages"][-1]
    assert reply.id is not None  # add_messages gave it one
    left = state.get("dead_ends_left", 0) - 1
    run.emit("dead_end", state["iterations"], retries_left=left, reason=reason(state))
    return {
        "messages": [RemoveMessage(id=reply.id)],
        "results": [],
        "code_blocks": [],
        "best_answer": best,
        "answer_errors": None,
        "premature_answer": None,
        "dead_ends_left": left,
        "resample": True,
    }
