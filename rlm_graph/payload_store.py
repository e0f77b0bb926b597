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
from typing import Any, cast

from langgraph.config import get_config
from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore

from rlm_graph.context_file import ContextFileError, DecodeErrors, read_context
from rlm_graph.describe import PayloadInfo, TextMeter, info_of, payload_chars, payload_type
from rlm_graph.inputs import InputError, validate_input
from rlm_graph.payload_file import TextDigest, scan_file, write_file
from rlm_graph.payload_parts import (
    PartMissing,
    StoredPayload,
    info_in,
    is_parts,
    iter_parts,
    read_value,
    write_parts,
)
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
        digest = TextDigest()  # the same digest a file streamed into the store gets
        for start in range(0, len(value), _HASH_SLICE):  # no whole UTF-8 copy of a big text
            digest.update(value[start : start + _HASH_SLICE])
        return digest.hexdigest()
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(b"j" + text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Given:
    """The run's payload as ``start`` uses it: its stored reference, its description (all the
    prompt and the events need) and ``load``, which returns the value itself: in memory already
    when it was given by value or read without a store, else read whole from the store (only
    the direct strategy and a follow-up's setup block need it)."""

    ref: PayloadRef
    info: PayloadInfo
    load: Callable[[], Any]


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
        digest, name, chars = content_hash(value), payload_type(value), payload_chars(value)
        store, persistent = self._store()
        if persistent:  # in parts, so the sandbox can stream it back (payload_parts)
            self._put_once(store, digest, lambda: write_parts(store, digest, value, name, chars))
        else:  # the graph's own memory: the value itself, sent from its own storage
            self._put_once(store, digest, lambda: {"type": name, "data": value})
            with self._lock:
                self._holders[digest] = self._holders.get(digest, 0) + 1
        return PayloadRef(hash=digest, type=name, chars=chars)

    def put_file(self, path: str, errors: DecodeErrors = "replace") -> Given:
        """Store the text of the file ``path`` (decoded as :mod:`rlm_graph.context_file` says).

        With a persistent store the file is streamed (:mod:`rlm_graph.payload_file`): read in
        slices to hash and describe it, then again to write its parts if the hash is new; the
        host never holds it. Without one the value must live in this process for the sandbox:
        it is read once into one ``str`` (``read_context``: a memory map, no second copy).
        Raises :class:`InputError` for a file that cannot be used."""
        store, persistent = self._store()
        try:
            if not persistent:  # "-" is a file of that name here, as below, never stdin
                value = read_context(path if path != "-" else "./-", decode_errors=errors)
                return Given(self.put(value), info_of(value), lambda: value)
            scan = scan_file(path, errors)
            ref = PayloadRef(hash=scan.digest, type="str", chars=scan.info.chars)
            self._put_once(store, ref["hash"], lambda: write_file(store, scan))
        except ContextFileError as exc:
            raise InputError(str(exc)) from None
        except OSError as exc:
            raise InputError(f"cannot read context_file {path}: {exc}") from None
        return Given(ref, scan.info, lambda: self.get(ref))

    def _put_once(self, store: BaseStore, digest: str, head_of: Callable[[], dict]) -> None:
        """Put the head ``head_of()`` makes (writing any parts first) unless the store holds
        ``digest`` already; in a thread, its reference record first."""
        thread = _thread_id() if store is not self._memory else None
        if thread is not None:
            # The reference before the check below: a concurrent collection either sees it and
            # keeps the payload, or deleted the payload first and the check puts it back.
            record = {"thread_id": thread, "at": time.time()}
            store.put((*REFS, digest), thread, record, index=False)
        if store.get(NAMESPACE, digest) is None:
            store.put(NAMESPACE, digest, head_of(), index=False)

    def get(self, ref: PayloadRef) -> Any:
        """The payload a reference names; :class:`PayloadMissing` if no store has it."""
        store, head = self._head(ref)
        if not is_parts(head):
            return head["data"]
        try:
            return read_value(store, ref["hash"], head)
        except PartMissing as exc:
            raise PayloadMissing(f"{exc}; run the question again") from None

    def info(self, ref: PayloadRef) -> PayloadInfo:
        """The description of the payload ``ref`` names, from its head: the payload itself is
        not read. A head written before heads kept one is read once, part by part (a text) or
        whole (a list or dict: its description needs each element)."""
        store, head = self._head(ref)
        if not is_parts(head):
            return info_of(head["data"])
        info = info_in(head)
        if info is not None:
            return info
        try:
            if head["kind"] == "json":
                return info_of(read_value(store, ref["hash"], head))
            meter = TextMeter()
            for piece in iter_parts(store, ref["hash"], head):
                meter.add(piece)
            return meter.info()
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


def input_payload(state: Mapping[str, Any], payloads: Payloads) -> Generator[Offload, Any, Given]:
    """The run's payload from ``context``, ``context_file`` or ``context_ref`` (default: the
    query itself), stored once; state keeps the reference. A file or a reference is not read
    into memory here when the store is persistent (see :class:`Given`)."""
    if state.get("context_ref"):
        ref: PayloadRef = state["context_ref"]
        info = yield Offload(lambda: payloads.info(ref))
        return Given(ref, info, lambda: payloads.get(ref))
    path = state.get("context_file")
    if path:
        errors = state.get("decode_errors") or "replace"
        if errors not in ("strict", "replace"):
            raise InputError(f"decode_errors must be 'strict' or 'replace', not {errors!r}")
        return (yield Offload(lambda: payloads.put_file(path, cast(DecodeErrors, errors))))
    payload = state.get("context")
    if payload is None:
        payload = state.get("query")
    validate_input(state.get("query"), payload)
    if isinstance(payload, tuple):
        payload = list(payload)
    stored = yield Offload(lambda: payloads.put(payload))
    return Given(stored, info_of(payload), lambda: payload)


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
