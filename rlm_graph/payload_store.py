"""The run's payload, kept out of graph state: stored once by content hash, referenced by a
small :class:`PayloadRef`.

Where it is stored: LangGraph's ``BaseStore`` of the run (``graph.compile(store=...)``, the
store ``langgraph dev`` or the LangGraph server injects, or the one :func:`store_for` derives
from a SQLite/Postgres checkpointer). A store lives beside the checkpoints in the same
database, so any worker that can resume a thread can also load its payload: no worker needs
another's local files. Without a store the payload is held in the graph's own memory for as
long as a run uses it (a resume in another process then needs a store: the error says so).

Checkpoints and node spans see only the reference (hash, type, size); the input can be a
reference too (``context_file`` or ``context_ref``), so the root span need not carry it.

Which threads hold a payload: each put in a thread first writes a small reference record,
namespace ``("rlm_graph", "payload_refs", <hash>)``, key the thread id. Deleting a thread
(:mod:`rlm_graph.payload_gc`) drops its records and deletes a payload once none is left.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langgraph.config import get_config
from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore

from rlm_graph.describe import payload_chars, payload_type
from rlm_graph.inputs import InputError, validate_input
from rlm_graph.payload_parts import PartMissing, StoredPayload, is_parts, read_value, write_parts
from rlm_graph.state import PayloadRef

NAMESPACE = ("rlm_graph", "payloads")
#: Prefix of the reference records: ``REFS + (hash,)``, one item per thread that holds it.
REFS = ("rlm_graph", "payload_refs")
#: Collections in progress: ``COLLECTING + (hash,)``, one item per collector. A reader that
#: misses the payload waits them out.
COLLECTING = ("rlm_graph", "collecting")
#: A marker older than this is a collector that died: readers stop waiting for it.
COLLECT_WAIT = 30.0


_HASH_SLICE = 1 << 20


class PayloadMissing(LookupError):
    """A referenced payload is in no store this process can read."""


def content_hash(value: Any) -> str:
    """sha256 of the payload (text as UTF-8; other values as canonical JSON)."""
    if isinstance(value, str):
        digest = hashlib.sha256(b"s")
        for start in range(0, len(value), _HASH_SLICE):  # no whole UTF-8 copy of a big text
            digest.update(value[start : start + _HASH_SLICE].encode("utf-8", "surrogatepass"))
        return "sha256:" + digest.hexdigest()
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(b"j" + text.encode("utf-8", "surrogatepass")).hexdigest()


def read_context_file(path: str) -> str:
    """The text of a ``context_file`` input (UTF-8, bad bytes replaced)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"context_file not found or not a regular file: {path}")
    return p.read_text(encoding="utf-8", errors="replace")


class Payloads:
    """Put and get payloads by reference in the run's store, or in memory without one.

    ``store_of()`` returns the run's store (``None`` without one); it is read at each call
    because the store belongs to the run (the server injects its own).
    """

    def __init__(self, store_of: Callable[[], BaseStore | None]) -> None:
        self._store_of = store_of
        self._memory = InMemoryStore()
        self._holders: dict[str, int] = {}
        self._lock = threading.Lock()

    def _store(self) -> tuple[BaseStore, bool]:
        store = self._store_of()
        return (store, True) if store is not None else (self._memory, False)

    def put(self, value: Any) -> PayloadRef:
        """Store ``value`` (once per content hash) and return its reference."""
        ref = PayloadRef(hash=content_hash(value), type=payload_type(value), chars=0)
        ref["chars"] = payload_chars(value)
        store, persistent = self._store()
        thread = _thread_id() if persistent else None
        if thread is not None:
            # The reference before the check below: a concurrent collection either sees it and
            # keeps the payload, or deleted the payload first and the check puts it back.
            record = {"thread_id": thread, "at": time.time()}
            store.put((*REFS, ref["hash"]), thread, record, index=False)
        if store.get(NAMESPACE, ref["hash"]) is None:
            if persistent:  # in parts, so the sandbox can stream it back (payload_parts)
                head = write_parts(store, ref["hash"], value, ref["type"], ref["chars"])
            else:  # the graph's own memory: the value itself, sent from its own storage
                head = {"type": ref["type"], "data": value}
            store.put(NAMESPACE, ref["hash"], head, index=False)
        if not persistent:
            with self._lock:
                self._holders[ref["hash"]] = self._holders.get(ref["hash"], 0) + 1
        return ref

    def get(self, ref: PayloadRef) -> Any:
        """The payload a reference names; :class:`PayloadMissing` if no store has it."""
        store, head = self._head(ref)
        if not is_parts(head):
            return head["data"]
        try:
            return read_value(store, ref["hash"], head)
        except PartMissing as exc:
            raise PayloadMissing(f"{exc}; run the question again") from None

    def source(self, ref: PayloadRef) -> Any:
        """What the sandbox loads for ``ref``: a :class:`StoredPayload` streaming the parts of a
        stored payload (the host never holds all of it), else the value itself."""
        store, head = self._head(ref)
        return StoredPayload(store, ref["hash"], head) if is_parts(head) else head["data"]

    def _head(self, ref: PayloadRef) -> tuple[BaseStore, dict]:
        store, persistent = self._store()
        item = store.get(NAMESPACE, ref["hash"])
        if item is None and persistent:
            item = _after_collection(store, ref["hash"])
        if item is None and persistent:
            raise PayloadMissing(
                f"the input of thread {_thread_id() or '?'} (payload {ref['hash'][:19]}) is no "
                "longer in the graph's store: it was deleted or expired; the thread cannot "
                "continue, run its question again"
            )
        if item is None:
            raise PayloadMissing(
                f"payload {ref['hash'][:19]} is not in this process; to resume a run in another "
                "process, build the graph with a persistent store (store=..., or a "
                "SQLite/Postgres checkpointer, from which build_graph derives one)"
            )
        return store, item.value

    def release(self, ref: PayloadRef | None) -> None:
        """A run is done with ``ref``: an in-memory copy no run holds any more is dropped.
        Persistent stores keep it (a thread's history still names it)."""
        if not ref:
            return
        with self._lock:
            left = self._holders.get(ref["hash"], 0) - 1
            if left > 0:
                self._holders[ref["hash"]] = left
                return
            if ref["hash"] not in self._holders:
                return
            del self._holders[ref["hash"]]
        self._memory.delete(NAMESPACE, ref["hash"])


def _after_collection(store: BaseStore, digest: str) -> Any:
    """The payload once a collection of it in progress is over (it puts back a payload that a
    thread came to reference meanwhile), or None."""
    while True:
        marks = store.search((*COLLECTING, digest), limit=10)
        if all(time.time() - float(m.value.get("at", 0)) > COLLECT_WAIT for m in marks):
            return store.get(NAMESPACE, digest)
        time.sleep(0.05)


def _thread_id() -> str | None:
    """The thread the calling node runs in (None outside a run or without a thread id)."""
    try:
        configurable = get_config().get("configurable") or {}
    except RuntimeError:
        return None
    thread = configurable.get("thread_id")
    return None if thread is None else str(thread)


@dataclass(frozen=True)
class Offload:
    """A blocking step (store or file I/O): called in sync runs, run on a worker thread in
    async ones (the server's store refuses sync calls from its event loop)."""

    call: Callable[[], Any]

    def run(self) -> Any:
        return self.call()

    async def arun(self) -> Any:
        return await asyncio.to_thread(self.call)


def input_payload(
    state: Mapping[str, Any], payloads: Payloads
) -> Generator[Offload, Any, tuple[Any, PayloadRef]]:
    """The run's payload and its stored reference, from ``context``, ``context_file`` or
    ``context_ref`` (default: the query itself). Stored once; state keeps the reference."""
    ref = state.get("context_ref")
    if ref:
        return (yield Offload(lambda: payloads.get(ref))), ref
    path = state.get("context_file")
    if path:
        try:
            payload: Any = yield Offload(lambda: read_context_file(path))
        except OSError as exc:
            raise InputError(f"cannot read context_file: {exc}") from None
    else:
        payload = state.get("context")
        if payload is None:
            payload = state.get("query")
        validate_input(state.get("query"), payload)
        if isinstance(payload, tuple):
            payload = list(payload)
    return payload, (yield Offload(lambda: payloads.put(payload)))


def store_for(checkpointer: Any) -> BaseStore | None:
    """A store beside a checkpointer's checkpoints: a SQLite saver's database file (its own
    connection), a Postgres saver's database; ``None`` for any other checkpointer."""
    module = type(checkpointer).__module__
    if module.startswith("langgraph.checkpoint.sqlite"):
        conn = getattr(checkpointer, "conn", None)
        if isinstance(conn, sqlite3.Connection):
            return _sqlite_store(conn)
    if module.startswith("langgraph.checkpoint.postgres"):
        return _postgres_store(checkpointer)
    return None


def _sqlite_store(conn: sqlite3.Connection) -> BaseStore:
    from langgraph.store.sqlite import SqliteStore

    path = next((row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"), "")
    if path:
        own = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        own.execute("PRAGMA busy_timeout = 30000")
        store = SqliteStore(own)
    else:  # an in-memory database is only reachable through its own connection
        store = SqliteStore(conn)
    store.setup()
    return store


def _postgres_store(checkpointer: Any) -> BaseStore | None:
    try:
        from langgraph.store.postgres import PostgresStore
    except ImportError:
        return None
    conn = getattr(checkpointer, "conn", None)
    if conn is None:
        return None
    store = PostgresStore(conn)
    store.setup()
    return store
