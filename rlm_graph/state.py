"""Graph state of one RLM run.

Only plain, serializable values live here (the live sandbox is kept in the graph's run table, keyed
by ``run_id``: see :mod:`rlm_graph.runs`), so any LangGraph checkpointer can save the state.
``typing_extensions.TypedDict`` because ``typing.TypedDict`` breaks the server's schemas on 3.11.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from langchain_core.messages import AnyMessage
from langgraph.channels.untracked_value import UntrackedValue
from langgraph.graph.message import add_messages
from typing_extensions import NotRequired, TypedDict


class Usage(TypedDict):
    """Token and call counts (summed over a run and its descendants)."""

    input_tokens: int
    output_tokens: int
    total_tokens: int
    llm_calls: int


def empty_usage() -> Usage:
    """A zeroed :class:`Usage`."""
    return Usage(input_tokens=0, output_tokens=0, total_tokens=0, llm_calls=0)


def add_usage(a: Usage, b: Usage) -> Usage:
    """Sum two usages field by field."""
    return Usage(
        input_tokens=a["input_tokens"] + b["input_tokens"],
        output_tokens=a["output_tokens"] + b["output_tokens"],
        total_tokens=a["total_tokens"] + b["total_tokens"],
        llm_calls=a["llm_calls"] + b["llm_calls"],
    )


class BlockResult(TypedDict):
    """What one executed code block produced (a serializable copy of the sandbox's result)."""

    index: int
    output: str
    output_chars: int
    error: str | None
    final_answer: str | None
    timed_out: bool
    restarted: bool
    seconds: float
    #: What :mod:`rlm_graph.probes` found in the data after a search that found nothing.
    probe: NotRequired[str]


class KeyTerm(TypedDict):
    """The term of the question to search the data for, and how often the data has it."""

    term: str
    count: int


class PayloadRef(TypedDict):
    """What state keeps of a payload (the payload itself is in the store): its content hash,
    type name and size in characters (see :mod:`rlm_graph.payload_store`)."""

    hash: str
    type: str
    chars: int


class JournalEntry(TypedDict):
    """One executed block, kept so a fresh sandbox can replay the run's REPL: its code, what it
    printed, and every sub-call's answer keyed by call (see :mod:`rlm_graph.journal`)."""

    iteration: int
    index: int
    code: str
    output: str
    error: str | None
    calls: dict[str, list[str]]
    #: In a thread's record the output is kept as this digest only (``output`` is empty): it
    #: serves to tell a diverged replay, and the record is carried by every checkpoint.
    output_hash: NotRequired[str]


class ThreadQuestion(TypedDict):
    """One question of a follow-up thread, kept so a fresh sandbox can rebuild the thread's
    REPL (see :mod:`rlm_graph.followups`): its query, the context it brought (a reference;
    None for a follow-up without one), that context's number (``context_<number>``; 0 for the
    thread's first question) and the blocks it ran."""

    query: str
    payload: PayloadRef | None
    number: int | None
    journal: list[JournalEntry]


class ThreadRecord(TypedDict):
    """A thread's finished questions, for its REPL's rebuild; ``full`` once the cap was hit
    (later questions are not recorded, their variables are not rebuilt)."""

    questions: list[ThreadQuestion]
    chars: int
    full: bool


class TreeSpent(TypedDict):
    """The tree budget's spend, saved so a resumed run continues it."""

    reserved: int
    usage: Usage
    seconds: float


def extend_journal(old: list[JournalEntry] | None, new: list[JournalEntry] | None) -> list[Any]:
    """Reducer of ``journal``: ``None`` starts a new run's journal, a list is appended."""
    if new is None:
        return []
    return [*(old or []), *new]


class InputState(TypedDict):
    """Input: the question and, optionally, the payload: by value (``context``), as a file
    (``context_file``, read by the run, UTF-8 as ``decode_errors`` says) or as a stored
    reference (``context_ref``)."""

    query: str
    #: Never checkpointed (an untracked channel): ``start`` stores it and clears it.
    context: NotRequired[Annotated[Any, UntrackedValue(object)]]
    context_file: NotRequired[str | None]
    #: How ``context_file`` is decoded: "replace" (the default: U+FFFD for bad bytes) or
    #: "strict" (bad UTF-8 or a NUL byte is an InputError; what the CLI passes by default).
    decode_errors: NotRequired[Literal["strict", "replace"] | None]
    context_ref: NotRequired[PayloadRef | None]


class OutputState(TypedDict):
    """Output of a run."""

    answer: str
    usage: Usage
    iterations: int
    stopped_reason: str
    messages: Annotated[list[AnyMessage], add_messages]
    #: Why the run stopped with ``stopped_reason="error"`` (a model call that failed for good).
    error: NotRequired[str | None]


def typed_output_state(annotation: Any) -> type:
    """The output schema of a graph with ``output_schema``: ``answer`` is the validated value
    (None when the run ended without a valid one), ``answer_text`` its text."""
    return TypedDict(  # type: ignore[operator]
        "OutputState",
        {
            "answer": Optional[annotation],  # noqa: UP045 (a runtime value, not an annotation)
            "answer_text": str,
            "usage": Usage,
            "iterations": int,
            "stopped_reason": str,
            "messages": Annotated[list[AnyMessage], add_messages],
        },
    )


class RouteState(TypedDict):
    """What routing after ``think`` and ``observe`` reads: LangGraph hands a path function only
    the keys of its annotation, so routing copies these three rather than the whole state."""

    stopped_reason: str
    answer: Any
    code_blocks: list[str]


class State(InputState, OutputState):
    """Full working state of a run (input + output + loop bookkeeping)."""

    run_id: str
    #: The answer's text (with an output schema, ``answer`` holds the validated value).
    answer_text: str
    #: Why the last answer did not match the output schema (shown in the next observation).
    answer_errors: str | None
    #: Earlier questions and answers on this thread, and contexts numbered so far (follow-ups).
    thread_turns: list[dict[str, str]]
    thread_contexts: int
    #: The thread's finished questions (payload references and journals), and the current
    #: one: what rebuilds the thread's REPL where its sandbox is gone (a restart, a TTL).
    thread_record: NotRequired[ThreadRecord | None]
    thread_question: NotRequired[ThreadQuestion | None]
    code_blocks: list[str]
    #: A Final Answer written in a reply that also had code: a guess, rejected (see nodes).
    premature_answer: str | None
    results: list[BlockResult]
    best_answer: str | None
    #: What observe tells the model about its last reply instead of the generic correction
    #: (a placeholder answer, an answer no output showed).
    feedback: NotRequired[str | None]
    #: Whether a short Final Answer that no output showed is questioned once (small models),
    #: and whether the run already did.
    check_answers: NotRequired[bool]
    answer_checked: NotRequired[bool]
    #: The question's rarest term in the data, which that check names as the search to run
    #: (:func:`rlm_graph.key_terms.key_term_once`), and whether the run looked it up yet.
    key_term: NotRequired[KeyTerm | None]
    key_term_looked: NotRequired[bool]
    #: Dead ends the run may still ask again, and whether the next model call samples
    #: (rlm_graph.dead_ends).
    dead_ends_left: NotRequired[int]
    resample: NotRequired[bool]
    #: The direct strategy: one call with the whole payload, no REPL.
    direct: NotRequired[bool]
    #: The payload's reference; the payload itself is in the store (never in state).
    payload: PayloadRef | None
    #: Every block executed so far with its output and sub-call answers (for replay).
    journal: Annotated[list[JournalEntry], extend_journal]
    #: The tree budget's spend (kept by the root run).
    tree_spent: TreeSpent | None
    #: Said once in the next observation: which replayed blocks printed something else.
    replay_note: str | None
