"""Follow-up questions on a thread: the next query on the same ``thread_id`` keeps the REPL.

With a checkpointer, a ``thread_id`` and ``follow_up_ttl > 0``, the root run's sandbox is not
closed at ``finish``: it is parked in the graph's :class:`ThreadSessions` under the thread id
for ``follow_up_ttl`` seconds (or until :func:`rlm_graph.close_runs` / the graph is dropped).
The next run on the thread takes it over: its variables are kept, the host functions are
re-bound to the new run (:class:`HandlerBinding`: usage, budget and events go to the new run),
and a new ``context`` is loaded as ``context_1``, ``context_2``, … with ``context`` the latest
(the first is also ``context_0``). The thread's state keeps a short list of the earlier
questions and answers (``thread_turns``), shown in the follow-up's first message.

Across a restart (a new process or graph object on the same SQLite/Postgres database) or past
the TTL, the REPL is rebuilt instead: the thread's state keeps a record (``thread_record``:
each question's query, the reference of the context it brought, its blocks with their
sub-call answers, outputs as digests; :func:`add_question`), and the follow-up's first block
runs in a fresh sandbox that first replays it (:func:`rlm_graph.rebuild.replay_thread`):
no model call is repeated, no budget spent. The record is carried by every checkpoint of the
thread, so it is capped (:data:`MAX_RECORD_QUESTIONS`, :data:`MAX_RECORD_CHARS`); past the cap
later questions are not recorded and a rebuild says their variables are lost.

Limits: the replay re-runs code (side effects happen again; a block that prints something
else is named once in the next observation); a rebuild needs a store for the earlier contexts
(without one, e.g. ``InMemorySaver`` alone, the variables are lost past the TTL and the prompt
says so); a follow-up's new context reaches the sandbox as a literal in a setup block
(:func:`setup_code`), not streamed like a run's first payload (a large one costs a few copies
and its parse time: loading it by reference needs a new sandbox message).
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import get_runtime

from rlm_graph.events import preview
from rlm_graph.journal import compacted, entry_chars
from rlm_graph.payload_store import Offload
from rlm_graph.state import JournalEntry, PayloadRef, ThreadQuestion, ThreadRecord

Handler = Callable[..., Any]
#: Earlier turns listed to a follow-up (oldest dropped first), and characters of each part.
MAX_TURNS = 10
TURN_CHARS = 300
#: The thread's record (what rebuilds its REPL) stops growing past these: every checkpoint of
#: the thread carries it (SQLite stores each checkpoint whole), so it is kept small (outputs
#: as digests) and bounded. Questions past the cap are answered, but not rebuilt.
MAX_RECORD_QUESTIONS = 50
MAX_RECORD_CHARS = 200_000


class HandlerBinding:
    """Host handlers for a sandbox whose run can change: each handler forwards to the bound
    run's own, so a parked sandbox serves the next run on its thread."""

    def __init__(self, make: Callable[[Any], Mapping[str, Handler]], run: Any) -> None:
        self._make = make
        self._handlers: Mapping[str, Handler] = {}
        self.bind(run)

    def bind(self, run: Any) -> None:
        """Serve ``run`` from now on."""
        self._handlers = self._make(run)

    def handlers(self) -> dict[str, Handler]:
        """The forwarding handlers, one per name the first run had."""

        def forward(name: str) -> Handler:
            def call(*args: Any) -> Any:
                return self._handlers[name](*args)

            return call

        return {name: forward(name) for name in self._handlers}


@dataclass
class Session:
    """A parked sandbox of a thread."""

    executor: Any
    binding: HandlerBinding
    #: Setup code not run yet (the follow-up ran no block): the next run runs it first.
    setup: str | None
    expires: float


class ThreadSessions:
    """The parked sandboxes of one compiled graph, by thread id (thread-safe)."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        weakref.finalize(self, _close_all, self._sessions, self._lock)

    def park(self, thread_id: str, session: Session, ttl: float) -> None:
        """Keep ``session`` for ``ttl`` seconds; a session already parked there is closed."""
        with self._lock:
            old = self._sessions.pop(thread_id, None)
            self._sessions[thread_id] = session
        if old is not None:
            _close(old)
        timer = threading.Timer(ttl, self._expire, args=(thread_id, session))
        timer.daemon = True
        timer.start()

    def take(self, thread_id: str) -> Session | None:
        """The thread's parked session (removed from the table), if still live."""
        with self._lock:
            session = self._sessions.pop(thread_id, None)
        if session is not None and session.expires < time.monotonic():
            _close(session)
            return None
        return session

    def _expire(self, thread_id: str, session: Session) -> None:
        with self._lock:
            if self._sessions.get(thread_id) is not session:
                return
            del self._sessions[thread_id]
        _close(session)

    def close_all(self) -> None:
        """Close every parked sandbox."""
        _close_all(self._sessions, self._lock)

    def ids(self) -> list[str]:
        """Thread ids with a parked sandbox."""
        with self._lock:
            return list(self._sessions)


def _close(session: Session) -> None:
    try:
        session.executor.close()
    except Exception:  # best effort: a parked sandbox that fails to close is already dead
        pass


def _close_all(sessions: dict[str, Session], lock: threading.Lock) -> None:
    with lock:
        closing = list(sessions.values())
        sessions.clear()
    for session in closing:
        _close(session)


@dataclass(frozen=True)
class FollowUp:
    """How a root run on a thread starts: its first message (None: the usual one) and its
    state update."""

    user_prompt: str | None
    update: dict[str, Any]


class FollowUps:
    """Follow-ups of one compiled graph: park a root run's sandbox at its end, hand it to the
    next run on the same thread at its start, and keep the thread's record for a rebuild."""

    def __init__(self) -> None:
        self.sessions = ThreadSessions()

    def begin(
        self,
        run: Any,
        state: Mapping[str, Any],
        config: RunnableConfig,
        graph: Any,
        ref: PayloadRef | None = None,
    ) -> Generator[Offload, Any, FollowUp]:
        """Attach the thread's parked sandbox to ``run`` (a run of ``graph`` whose payload is
        stored as ``ref``), or plan its rebuild from the thread's record. A run with no thread
        (no checkpointer, no ``thread_id``, a child, or follow-ups off) gets no first message.
        ``state["context"]`` is the :class:`~rlm_graph.payload_store.Given` payload the caller
        brought, or None; its value is read only for a parked sandbox's setup block."""
        saver = getattr(graph, "checkpointer", None) not in (None, False)
        run.thread_id = thread_of(config, saver, run.info.depth, run.ctx.follow_up_ttl)
        if run.thread_id is None:
            return FollowUp(None, {"thread_question": None})
        from rlm_graph import prompts  # lazy: prompts imports describe, not this module

        query, given = str(state["query"]), state.get("context")
        turns = list(state.get("thread_turns") or [])
        durable = _has_store()  # a rebuild loads the earlier contexts from the store
        record = state.get("thread_record") if durable else None
        session = self.sessions.take(run.thread_id)
        if session is None and not (record and record["questions"]):
            first = prompts.user_prompt(query, query if given is None else given.info)
            question = ThreadQuestion(query=query, payload=ref, number=0, journal=[])
            update = {
                "thread_contexts": 0,
                "thread_turns": turns,
                "thread_record": ThreadRecord(questions=[], chars=0, full=False),
                "thread_question": question if durable else None,
            }
            return FollowUp(_with_turns(first, turns, "lost"), update)
        number = None if given is None else int(state.get("thread_contexts") or 0) + 1
        if session is None:  # rebuilt at the first block (rlm_graph.rebuild.replay_thread)
            kept = "rebuilt" if not (record and record["full"]) else "partly"
        else:
            kept = "kept"
            run.executor, run.binding = session.executor, session.binding
            session.binding.bind(run)
            # The new context goes in as a literal (see the module's limits): read whole here.
            value = None if given is None else (yield Offload(given.load))
            setup = setup_code(query, value, number)
            run.setup = setup if session.setup is None else f"{session.setup}\n{setup}"
        if given is None:
            first = prompts.follow_up_prompt(query)
        else:
            first = prompts.user_prompt(query, given.info) + f"\n(It is also `context_{number}`.)"
        new = ref if given is not None else None
        question = ThreadQuestion(query=query, payload=new, number=number, journal=[])
        update = {
            "thread_contexts": number or int(state.get("thread_contexts") or 0),
            "thread_turns": turns,
            "thread_question": question if durable else None,
        }
        return FollowUp(_with_turns(first, turns, kept, record), update)

    def end(self, run: Any, state: Mapping[str, Any], answer_text: str) -> dict[str, Any]:
        """Park the run's sandbox for the thread's next question; the turns list and the
        thread's record, updated (this question and its blocks added)."""
        question = state.get("thread_question")
        if getattr(run, "thread_id", None) is None and question is None:
            return {}
        if run.executor is not None and run.binding is not None and run.thread_id is not None:
            ttl = run.ctx.follow_up_ttl
            session = Session(run.executor, run.binding, run.setup, time.monotonic() + ttl)
            run.executor = None  # not closed with the run
            self.sessions.park(run.thread_id, session, ttl)
        turns = add_turn(list(state.get("thread_turns") or []), str(state["query"]), answer_text)
        update: dict[str, Any] = {"thread_turns": turns}
        if question is not None:
            journal = list(state.get("journal") or [])
            record = add_question(state.get("thread_record"), question, journal)
            # The run's own journal now lives (compacted) in the record: not twice per checkpoint.
            update.update(thread_record=record, thread_question=None, journal=None)
        return update


def _has_store() -> bool:
    """Whether this run has a store (payloads outlive the run): a rebuild needs one."""
    try:
        return get_runtime().store is not None
    except RuntimeError:  # called outside a graph run
        return False


def add_question(
    record: ThreadRecord | None, question: ThreadQuestion, journal: list[JournalEntry]
) -> ThreadRecord:
    """``record`` with ``question`` and its blocks (outputs as digests) added; past
    :data:`MAX_RECORD_QUESTIONS` or :data:`MAX_RECORD_CHARS` it is ``full`` and not added."""
    record = record or ThreadRecord(questions=[], chars=0, full=False)
    entries = [compacted(e) for e in journal]
    chars = len(question["query"]) + sum(entry_chars(e) for e in entries)
    too_many = len(record["questions"]) >= MAX_RECORD_QUESTIONS
    if record["full"] or too_many or record["chars"] + chars > MAX_RECORD_CHARS:
        return {**record, "full": True}
    added = ThreadQuestion(
        query=question["query"],
        payload=question["payload"],
        number=question["number"],
        journal=entries,
    )
    return ThreadRecord(
        questions=[*record["questions"], added], chars=record["chars"] + chars, full=False
    )


def _with_turns(
    first: str, turns: list[dict[str, str]], kept: str, record: ThreadRecord | None = None
) -> str:
    if not turns:
        return first
    recorded = len(record["questions"]) if record else 0
    return f"{turns_text(turns, kept, recorded)}\n\n{first}"


def thread_of(config: RunnableConfig, has_checkpointer: bool, depth: int, ttl: float) -> str | None:
    """The thread id whose sandbox a root run keeps, or None (no follow-ups for this run)."""
    if depth != 0 or ttl <= 0 or not has_checkpointer:
        return None
    thread = (config.get("configurable") or {}).get("thread_id")
    return str(thread) if thread is not None and thread != "" else None


def literal(value: Any) -> str:
    """A Python expression rebuilding the JSON-like ``value`` (host data, never code)."""
    if isinstance(value, str):
        return repr(value)
    return f"__import__('json').loads({json.dumps(value, ensure_ascii=False)!r})"


def setup_code(query: str, payload: Any, number: int | None) -> str:
    """The block a follow-up runs first: the new ``query`` and, with a new payload,
    ``context_<number>`` and ``context`` (the first one kept as ``context_0``)."""
    lines = [f"query = {literal(query)}"]
    if number is not None:
        lines += [
            "if 'context_0' not in globals():\n    context_0 = context",
            f"context_{number} = context = {literal(payload)}",
        ]
    return "\n".join(lines)


def turns_text(turns: list[dict[str, str]], kept: str | bool, recorded: int = 0) -> str:
    """The follow-up's note on the earlier questions on its thread. ``kept``: "kept" (the
    parked sandbox), "rebuilt" (replayed from the record), "partly" (the record is full: only
    its first ``recorded`` questions replayed) or "lost"."""
    lines = ["This is a follow-up question. Earlier on this thread (oldest first):"]
    for i, turn in enumerate(turns, 1):
        lines.append(f"{i}. Q: {turn['query']}\n   A: {turn['answer']}")
    if kept in ("kept", True):
        lines.append("Your REPL variables from those questions are still defined.")
    elif kept in ("rebuilt", "partly"):
        lines.append(
            "Your REPL variables from those questions are kept: the REPL is rebuilt by "
            "re-running their code, with their sub-calls answered from the record (if a block "
            "prints something different this time, your next observation says which)."
        )
        if kept == "partly":
            lines.append(
                f"Only the first {recorded} questions of this thread are recorded (its record "
                "is full): variables set by later ones are lost."
            )
    else:
        lines.append("The REPL was restarted since: variables from those questions are lost.")
    return "\n".join(lines)


def add_turn(turns: list[dict[str, str]], query: str, answer: str) -> list[dict[str, str]]:
    """``turns`` with one more, the oldest dropped past :data:`MAX_TURNS`."""
    new = {"query": preview(query, TURN_CHARS), "answer": preview(answer, TURN_CHARS)}
    return [*turns, new][-MAX_TURNS:]


__all__ = [
    "MAX_RECORD_CHARS",
    "MAX_RECORD_QUESTIONS",
    "FollowUp",
    "FollowUps",
    "HandlerBinding",
    "Session",
    "ThreadSessions",
    "add_question",
    "add_turn",
    "literal",
    "setup_code",
    "thread_of",
    "turns_text",
]
