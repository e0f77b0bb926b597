"""Payload garbage collection (open issue 13): deleting a thread deletes the payloads no other
thread references, children's chunks included; a payload shared by content stays while a
thread holds it; a run storing a payload while it is collected keeps it."""

from __future__ import annotations

import datetime
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.store.memory import InMemoryStore

from rlm_graph import build_graph, delete_threads, prune_threads, release_payloads
from rlm_graph.payload_gc import _collect, last_active
from rlm_graph.payload_store import NAMESPACE, REFS, PayloadMissing, Payloads, content_hash
from tests.fakes import FakeChatModel, code, depth, final, last_text, turn


def _payload_keys(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT key FROM store WHERE prefix = ?", (".".join(NAMESPACE),))
        return {r[0] for r in rows}
    finally:
        conn.close()


def _graph(db: Path, model: FakeChatModel) -> Any:
    conn = sqlite3.connect(db, check_same_thread=False)
    return build_graph(model=model, checkpointer=SqliteSaver(conn))


def _measuring() -> FakeChatModel:
    return FakeChatModel(respond=lambda m: code("final_answer(len(context))"))


def _run(graph: Any, thread: str, context: Any) -> Any:
    config = {"configurable": {"thread_id": thread}}
    return graph.invoke({"query": "how long?", "context": context}, config)


def test_a_shared_payload_stays_until_its_last_thread_is_deleted(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    graph = _graph(db, _measuring())
    shared, own = "shared text " * 500, "only mine " * 300
    for thread, text in (("a", shared), ("b", shared), ("c", own)):
        assert _run(graph, thread, text)["answer"] == str(len(text))
    assert _payload_keys(db) == {content_hash(shared), content_hash(own)}
    gone = delete_threads(graph, ["a"])
    assert gone.threads == ["a"] and gone.payloads == []
    assert _payload_keys(db) == {content_hash(shared), content_hash(own)}
    assert graph.get_state({"configurable": {"thread_id": "a"}}).values == {}
    gone = delete_threads(graph, ["b"])
    assert gone.payloads == [content_hash(shared)] and gone.chars == len(shared)
    assert _payload_keys(db) == {content_hash(own)}
    assert graph.get_state({"configurable": {"thread_id": "c"}}).values["answer"] == str(len(own))


def _delegating() -> FakeChatModel:
    """The root hands a chunk of its context to a child, which measures it."""

    def respond(messages: list[BaseMessage]) -> str:
        if depth(messages) == 0:
            return code("final_answer(rlm_query('Measure it.', context[:700]))")
        if turn(messages) == 0:
            return code("print(len(context))")
        return final(last_text(messages).split("Observation:\n")[1].split()[0])

    return FakeChatModel(respond=respond)


def test_a_childs_chunk_is_collected_with_its_thread(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    graph = _graph(db, _delegating())
    text = "abcdefghij" * 200
    assert _run(graph, "t", text)["answer"] == "700"
    assert _payload_keys(db) == {content_hash(text), content_hash(text[:700])}
    gone = delete_threads(graph, ["t"])
    assert sorted(gone.payloads) == sorted([content_hash(text), content_hash(text[:700])])
    assert _payload_keys(db) == set()


def test_prune_deletes_threads_idle_longer_than_the_limit(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    graph = _graph(db, _measuring())
    _run(graph, "old", "old text " * 100)
    time.sleep(1.0)
    _run(graph, "new", "new text " * 100)
    active = last_active(graph.checkpointer)
    assert active["old"] + 0.5 < active["new"]
    now = time.time()
    kept = prune_threads(graph, now - active["old"] + 60, now=now)  # both newer than that
    assert kept.threads == [] and len(_payload_keys(db)) == 2
    between = (active["old"] + active["new"]) / 2
    gone = prune_threads(graph, datetime.timedelta(seconds=now - between), now=now)
    assert gone.threads == ["old"], gone
    assert _payload_keys(db) == {content_hash("new text " * 100)}
    assert set(last_active(graph.checkpointer)) == {"new"}


def test_references_of_threads_deleted_elsewhere_are_released() -> None:
    store = InMemoryStore()
    store.put(NAMESPACE, "sha256:x", {"type": "str", "data": "x"})
    store.put((*REFS, "sha256:x"), "gone", {"thread_id": "gone", "at": 0.0})
    assert release_payloads(store, ["gone"]).payloads == ["sha256:x"]
    assert store.get(NAMESPACE, "sha256:x") is None


class _RacingStore(InMemoryStore):
    """A store where a run of thread "racer" writes its reference to a payload right after
    the collector deleted it (the run had found the payload present, so did not store it)."""

    def delete(self, namespace: tuple[str, ...], key: str) -> None:
        super().delete(namespace, key)
        if namespace == NAMESPACE:
            self.put((*REFS, key), "racer", {"thread_id": "racer", "at": 0.0})


def test_a_payload_stored_while_it_is_collected_is_kept() -> None:
    # The collector deletes the payload; a run that had just found it present writes its
    # reference before the collector looks again: the payload is put back.
    store = _RacingStore()
    store.put(NAMESPACE, "sha256:x", {"type": "str", "data": "x"})
    assert _collect(store, "sha256:x") is None
    assert store.get(NAMESPACE, "sha256:x") is not None


def test_a_run_storing_a_payload_during_a_collection_finds_it(tmp_path: Path) -> None:
    # Real threads racing on one SQLite store: puts by runs of other threads against
    # collections of a thread that held the same content. Every run must find its payload.
    db = tmp_path / "t.db"
    graph = _graph(db, _measuring())
    store = graph.store
    payloads = Payloads(lambda: store)
    errors: list[str] = []

    def runner(n: int) -> None:
        for i in range(30):
            thread = f"run{n}-{i}"
            ref = _put_in_thread(payloads, thread, "same text")
            try:
                payloads.get(ref)
            except PayloadMissing as exc:
                errors.append(str(exc))
            release_payloads(store, [thread])

    workers = [threading.Thread(target=runner, args=(n,)) for n in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert errors == []


def _put_in_thread(payloads: Payloads, thread: str, value: Any) -> Any:
    from langchain_core.runnables.config import var_child_runnable_config

    token = var_child_runnable_config.set({"configurable": {"thread_id": thread}})
    try:
        return payloads.put(value)
    finally:
        var_child_runnable_config.reset(token)


def test_a_graph_without_a_checkpointer_has_no_threads_to_delete() -> None:
    with pytest.raises(ValueError, match="no checkpointer"):
        delete_threads(build_graph(model=_measuring()), ["t"])


class _PausingStore(InMemoryStore):
    """Holds the first collector inside its delete of the payload's head until released."""

    def __init__(self) -> None:
        super().__init__()
        self.first_delete = threading.Event()
        self.release = threading.Event()
        self._paused = False

    def delete(self, namespace: tuple[str, ...], key: str) -> None:
        if namespace == NAMESPACE and not self._paused:
            self._paused = True
            self.first_delete.set()
            assert self.release.wait(30)
        super().delete(namespace, key)


def test_two_collections_of_one_payload_never_leave_a_head_without_its_parts() -> None:
    # Two threads that held the same payload are deleted at once. The first collector is held
    # in its delete while the second starts; then a run stores a reference. Run one at a time,
    # the first puts the head back (a reference appeared) and the second keeps it too. Run
    # together, the second would delete the parts the first then put a head back for.
    store = _PausingStore()
    payloads = Payloads(lambda: store)
    ref = _put_in_thread(payloads, "a", "shared text " * 200_000)
    store.delete((*REFS, ref["hash"]), "a")
    first = threading.Thread(target=_collect, args=(store, ref["hash"]))
    first.start()
    assert store.first_delete.wait(30)
    second = threading.Thread(target=_collect, args=(store, ref["hash"]))
    second.start()
    time.sleep(0.3)  # the second collector reaches its wait (or, unserialised, its delete)
    store.put((*REFS, ref["hash"]), "racer", {"thread_id": "racer", "at": time.time()})
    store.release.set()
    first.join(30)
    second.join(30)
    assert payloads.get(ref) == "shared text " * 200_000
