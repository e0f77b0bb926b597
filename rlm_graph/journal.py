"""The run's REPL, made durable: a record of every executed block, and its replay.

A sandbox cannot be checkpointed, so state keeps what rebuilds it: each block's code, its
output and the answer of every sub-call it made (:class:`~rlm_graph.state.JournalEntry`).
When a run resumes where no live sandbox exists (a new process, or a sandbox closed after its
TTL), a fresh sandbox runs the recorded blocks again in order, and each sub-call is answered
from the record: no model is called and no budget is spent. A replayed block whose output or
error differs from the record (time, randomness, files, a sub-call not in the record) is named
once in the next observation, so the model knows its variables may differ.

Sub-calls are keyed by what was asked (function and arguments), with answers kept in call
order per key, so concurrent sub-calls (``llm_query_batched``) replay whatever order they
arrive in.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Generator, Mapping
from typing import Any

from rlm_graph.executor import BlockOutcome, Executor
from rlm_graph.state import JournalEntry
from rlm_graph.steps import RunBlock

NOT_RECORDED = "Error: this sub-call is not in the record of the run being replayed"


def call_key(function: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    """A short stable key for one sub-call: its function and arguments."""
    text = json.dumps([function, list(args), dict(kwargs)], sort_keys=True, default=str)
    return function + ":" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


class RecordingHandlers:
    """The handlers an executor calls. Live: each call goes to the host function and its answer
    is recorded for the current block. Replaying: each call is answered from the record."""

    def __init__(self, live: Mapping[str, Callable[..., Any]]) -> None:
        self._live = dict(live)
        self._lock = threading.Lock()
        self._calls: dict[str, list[str]] = {}
        self._replay: dict[str, list[str]] | None = None
        self.missed = False

    def as_dict(self) -> dict[str, Callable[..., Any]]:
        """Mapping for the executor's ``handlers`` (same names as the live ones)."""
        return {name: self._handler(name) for name in self._live}

    def _handler(self, name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            return self.call(name, args, kwargs)

        return call

    def begin_block(self, replay: Mapping[str, list[str]] | None = None) -> None:
        """Start recording a new block; with ``replay``, answer its calls from that record."""
        with self._lock:
            self._calls = {}
            self._replay = None if replay is None else {k: list(v) for k, v in replay.items()}
            self.missed = False

    def calls(self) -> dict[str, list[str]]:
        """The current block's recorded answers."""
        with self._lock:
            return {k: list(v) for k, v in self._calls.items()}

    def call(self, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        """One sub-call from the sandbox."""
        key = call_key(name, args, kwargs)
        with self._lock:
            replay = self._replay
            if replay is not None:
                answers = replay.get(key)
                if answers:
                    return answers.pop(0)
                self.missed = True
                return NOT_RECORDED
        answer = self._live[name](*args, **kwargs)
        with self._lock:
            self._calls.setdefault(key, []).append(str(answer))
        return answer


def entry_of(iteration: int, index: int, code: str, outcome: BlockOutcome, calls: Any) -> Any:
    """The journal entry of one executed block."""
    return JournalEntry(
        iteration=iteration,
        index=index,
        code=code,
        output=outcome.output,
        error=outcome.error,
        calls=calls,
    )


def digest(text: str) -> str:
    """A short digest of a block's output (what a thread's record keeps of it)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def compacted(entry: JournalEntry) -> JournalEntry:
    """``entry`` with its output replaced by its digest (for a thread's record)."""
    if "output_hash" in entry:
        return entry
    return {**entry, "output": "", "output_hash": digest(entry["output"])}


def entry_chars(entry: JournalEntry) -> int:
    """Roughly what ``entry`` adds to a checkpoint, in characters."""
    calls = sum(len(k) + sum(len(a) for a in v) for k, v in entry["calls"].items())
    return len(entry["code"]) + len(entry["output"]) + len(entry["error"] or "") + calls + 64


def _same(entry: JournalEntry, outcome: BlockOutcome) -> bool:
    if (outcome.error is None) != (entry["error"] is None):
        return False
    if "output_hash" in entry:
        return digest(outcome.output) == entry["output_hash"]
    return outcome.output == entry["output"]


def replay_blocks(
    executor: Executor, handlers: RecordingHandlers, journal: list[JournalEntry], where: str = ""
) -> Generator[RunBlock, Any, list[str]]:
    """Run the journal's blocks again (sub-calls answered from the record); the blocks that
    diverged, each named ``<where>iteration I, block B``."""
    diverged = []
    for entry in journal:
        handlers.begin_block(replay=entry["calls"])
        outcome = yield RunBlock(executor, entry["code"], traced=False)
        if not _same(entry, outcome) or handlers.missed:
            diverged.append(f"{where}iteration {entry['iteration']}, block {entry['index'] + 1}")
    handlers.begin_block(None)
    return diverged


def divergence_note(diverged: list[str], thread: bool = False) -> str | None:
    """The note for the model naming the replayed blocks that diverged, or None."""
    if not diverged:
        return None
    what = (
        "this thread's REPL was rebuilt by re-running the code of its earlier questions"
        if thread
        else "this run was resumed and its REPL rebuilt by re-running the earlier code"
    )
    return (
        f"Note: {what}; these blocks printed something different this time: "
        f"{'; '.join(diverged)}. "
        "Variables they set may differ from before: check before relying on them."
    )


def replay(
    executor: Executor, handlers: RecordingHandlers, journal: list[JournalEntry]
) -> Generator[RunBlock, Any, str | None]:
    """Run the journal's blocks again in a fresh executor (sub-calls answered from the record).
    Returns the note for the model naming the blocks that diverged, or None."""
    return divergence_note((yield from replay_blocks(executor, handlers, journal)))
