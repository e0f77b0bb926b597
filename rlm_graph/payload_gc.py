"""Deleting threads and the payloads only they held (the payloads' garbage collection).

A payload is stored once per content hash, so two threads given the same file share it. Each
put in a thread writes a reference record beside it (:data:`rlm_graph.payload_store.REFS`:
one small item per (hash, thread)), *before* it checks whether the payload is already stored.
Deleting a thread removes its checkpoints, then its reference records, then every payload with
no record left. The records are written at store time rather than found by reading the
thread's checkpoints: they cover children's chunks and whatever else a thread's state comes to
hold (earlier questions' payloads), they exist before the first checkpoint naming the payload
(so a run in flight is protected), and finding them costs one indexed query, not a decode of
every checkpoint.

A run storing the same payload while it is being collected: the collector marks the hash as
being collected, reads the payload, deletes it, then looks for references again; one that
appeared meanwhile makes it put the payload back before it removes the mark. A run that found
the payload present just before the delete and reads it during the collection waits for the
mark to go; a run that looked after the delete stores the payload itself. Either way a thread
that holds a reference finds its payload. Two collections of the same payload (two threads
that shared it, deleted at once) take turns, oldest mark first, so one never deletes the parts
the other is putting a head back for.

Works with any ``BaseStore`` (SQLite, Postgres, the LangGraph server's) and any synchronous
checkpointer with ``delete_thread``.
"""

from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from langgraph.store.base import BaseStore

from rlm_graph.describe import payload_chars
from rlm_graph.payload_parts import delete_parts, is_parts
from rlm_graph.payload_store import COLLECT_WAIT, COLLECTING, NAMESPACE, REFS

__all__ = ["Collected", "delete_threads", "prune_threads", "release_payloads"]

_PAGE = 500


@dataclass
class Collected:
    """What a deletion removed."""

    #: The threads whose checkpoints and payload references were deleted.
    threads: list[str] = field(default_factory=list)
    #: The content hashes of the payloads deleted (no remaining thread held them).
    payloads: list[str] = field(default_factory=list)
    #: Their total size in characters (list and dict payloads: as the prompt counts them).
    chars: int = 0


def release_payloads(store: BaseStore, thread_ids: Iterable[str]) -> Collected:
    """Drop the payload references of ``thread_ids`` and delete every payload no other thread
    still references. For checkpoints deleted elsewhere (the LangGraph server's thread API);
    :func:`delete_threads` does both."""
    out = Collected()
    for thread in thread_ids:
        hashes = _hashes_of(store, thread)
        for digest in hashes:
            store.delete((*REFS, digest), thread)
        for digest in hashes:
            chars = _collect(store, digest)
            if chars is not None:
                out.payloads.append(digest)
                out.chars += chars
        out.threads.append(thread)
    return out


def delete_threads(graph: Any, thread_ids: Iterable[str]) -> Collected:
    """Delete threads of a compiled graph: their checkpoints (``checkpointer.delete_thread``)
    and every payload of theirs that no remaining thread references (children's chunks
    included). A payload another thread still holds stays. Do not delete a thread that is
    running. The graph's store is the one :func:`rlm_graph.build_graph` derived or was given;
    a SQLite file shrinks only after ``VACUUM`` (the CLI runs one)."""
    checkpointer, store = _parts(graph)
    ids = list(dict.fromkeys(thread_ids))
    for thread in ids:
        checkpointer.delete_thread(thread)
    if store is None:
        return Collected(threads=ids)
    return release_payloads(store, ids)


def prune_threads(
    graph: Any, older_than: datetime.timedelta | float, *, now: float | None = None
) -> Collected:
    """Delete the threads last active more than ``older_than`` (a timedelta, or seconds) ago,
    as :func:`delete_threads` does. Last active is the newest checkpoint's time, so a thread
    resumed yesterday is kept however old it is. Payload references of threads that have no
    checkpoint at all (deleted elsewhere) and are as old are released too."""
    checkpointer, store = _parts(graph)
    seconds = (
        older_than.total_seconds() if isinstance(older_than, datetime.timedelta) else older_than
    )
    cutoff = (datetime.datetime.now().timestamp() if now is None else now) - float(seconds)
    latest = last_active(checkpointer)
    old = [t for t, when in latest.items() if when < cutoff]
    out = delete_threads(graph, old)
    if store is not None:
        gone = release_payloads(store, _stale_refs(store, set(latest), cutoff))
        out.payloads += gone.payloads
        out.chars += gone.chars
    return out


def last_active(checkpointer: Any) -> dict[str, float]:
    """Each thread's newest checkpoint time (epoch seconds)."""
    latest: dict[str, float] = {}
    for tup in checkpointer.list(None):
        thread = str(tup.config["configurable"]["thread_id"])
        when = datetime.datetime.fromisoformat(tup.checkpoint["ts"]).timestamp()
        latest[thread] = max(when, latest.get(thread, when))
    return latest


def _parts(graph: Any) -> tuple[Any, BaseStore | None]:
    checkpointer = getattr(graph, "checkpointer", None)
    if checkpointer is None or isinstance(checkpointer, bool):
        raise ValueError("the graph has no checkpointer of its own: it keeps no threads to delete")
    return checkpointer, getattr(graph, "store", None)


def _hashes_of(store: BaseStore, thread: str) -> list[str]:
    """The payload hashes ``thread`` holds a reference to."""
    found: list[str] = []
    while True:
        page = store.search(REFS, filter={"thread_id": thread}, limit=_PAGE, offset=len(found))
        found += [item.namespace[-1] for item in page if item.key == thread]
        if len(page) < _PAGE:
            return found


def _stale_refs(store: BaseStore, known: set[str], cutoff: float) -> list[str]:
    """Threads with a reference record older than ``cutoff`` and no checkpoint."""
    stale: set[str] = set()
    offset = 0
    while True:
        page = store.search(REFS, limit=_PAGE, offset=offset)
        offset += len(page)
        for item in page:
            at = float(item.value.get("at", 0))
            if item.key not in known and at < cutoff:
                stale.add(item.key)
        if len(page) < _PAGE:
            return sorted(stale)


def _referenced(store: BaseStore, digest: str) -> bool:
    return bool(store.search((*REFS, digest), limit=1))


def _collect(store: BaseStore, digest: str) -> int | None:
    """Delete the payload ``digest`` if no thread references it; its size, or None if kept."""
    if _referenced(store, digest):
        return None
    mark = uuid.uuid4().hex  # its own key: another collector's end does not remove it
    at = time.time()
    store.put((*COLLECTING, digest), mark, {"at": at}, index=False)
    try:
        _wait_turn(store, digest, (at, mark))
        item = store.get(NAMESPACE, digest)
        if item is None:
            return None
        store.delete(NAMESPACE, digest)
        if _referenced(store, digest):  # a run stored it meanwhile and may have seen it present
            store.put(NAMESPACE, digest, item.value, index=False)
            return None
        if not is_parts(item.value):
            return payload_chars(item.value.get("data"))
        # This write's generation only: a run storing it again meanwhile wrote its own parts.
        delete_parts(store, digest, item.value)
        return int(item.value.get("size", 0))
    finally:
        store.delete((*COLLECTING, digest), mark)


def _wait_turn(store: BaseStore, digest: str, mine: tuple[float, str]) -> None:
    """Wait until no live collection of ``digest`` began before this one (by time, then key).

    One collector at a time per payload: two that read the same head would otherwise race, one
    putting the head back (a reference appeared) while the other deletes the parts it names.
    """
    while True:
        now = time.time()
        older = [
            m
            for m in store.search((*COLLECTING, digest), limit=100)
            if now - float(m.value.get("at", 0)) <= COLLECT_WAIT
            and (float(m.value.get("at", 0)), m.key) < mine
        ]
        if not older:
            return
        time.sleep(0.02)
