"""A stored payload as a small head item plus parts of a few MB, so no step holds it twice.

Writing encodes one part at a time (the store's JSON of one part, not of the whole payload);
reading for the sandbox (:class:`StoredPayload`) streams the parts into the zygote one by one,
so the host holds one part, never the payload. The parts of one write are keyed by a fresh
generation id named in the head: a collector deleting an unreferenced payload's parts and a run
storing the same payload again meanwhile never touch each other's parts.

Layout in any ``BaseStore``: the head at ``NAMESPACE, <hash>`` (type, kind, chars, size, parts,
generation); part ``i`` at ``PARTS + (<hash>, <generation>)``, key ``%06d`` of ``i``, value
``{"text": ...}`` (the characters of a ``str``, or a slice of a JSON value's JSON text).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

from langgraph.store.base import BaseStore, PutOp

from rlm_graph.sandbox.payload import PayloadStream, canonical_kind

#: Namespace prefix of the parts: ``PARTS + (hash, generation)``.
PARTS = ("rlm_graph", "payload_parts")
#: Characters per part. The store decodes each row with orjson, whose transient buffers are
#: about 14x the row (measured with tracemalloc): 1M characters keeps that near 15 MB.
PART_CHARS = 1 << 20
#: Parts written per store call (one transaction each in SQLite and Postgres).
PUTS_PER_BATCH = 8


class PartMissing(LookupError):
    """A part named by a payload's head is not in the store (deleted meanwhile)."""


def write_parts(store: BaseStore, digest: str, value: Any, type_name: str, size: int) -> dict:
    """Store ``value``'s parts under a new generation; returns the head to store last (a head
    in the store means every part it names is there)."""
    generation = uuid.uuid4().hex[:12]
    if isinstance(value, str):
        kind, chars, texts = canonical_kind(value), len(value), _slices(value)
    else:
        kind, chars, texts = "json", 0, _json_slices(value)
    namespace, count, batch = (*PARTS, digest, generation), 0, []
    for text in texts:
        batch.append(PutOp(namespace, _key(count), {"text": text}, index=False))
        count += 1
        if len(batch) == PUTS_PER_BATCH:  # one transaction per batch, not per part
            store.batch(batch)
            batch = []
    if batch:
        store.batch(batch)
    return {
        "type": type_name,
        "layout": "parts",
        "kind": kind,
        "chars": chars,
        "size": size,
        "parts": count,
        "generation": generation,
    }


def is_parts(head: dict) -> bool:
    """Whether a stored head names parts (the older layout kept the value in ``data``)."""
    return head.get("layout") == "parts"


def read_value(store: BaseStore, digest: str, head: dict) -> Any:
    """The whole payload, joined from its parts (for callers that need the value itself)."""
    text = "".join(iter_parts(store, digest, head))
    return text if head["kind"] != "json" else json.loads(text)


def iter_parts(store: BaseStore, digest: str, head: dict) -> Iterator[str]:
    """The parts' texts in order, each read when asked for; :class:`PartMissing` for a gap."""
    namespace = (*PARTS, digest, str(head["generation"]))
    for i in range(int(head["parts"])):
        item = store.get(namespace, _key(i))
        if item is None:
            raise PartMissing(
                f"part {i} of payload {digest[:19]} is no longer in the graph's store (the "
                "thread was deleted meanwhile)"
            )
        yield str(item.value["text"])


def delete_parts(store: BaseStore, digest: str, head: dict) -> None:
    """Delete the parts a head names (the head itself is the caller's)."""
    namespace = (*PARTS, digest, str(head["generation"]))
    for i in range(int(head["parts"])):
        store.delete(namespace, _key(i))


class StoredPayload(PayloadStream):
    """A payload in a store, streamed part by part into each zygote the sandbox starts."""

    def __init__(self, store: BaseStore, digest: str, head: dict) -> None:
        self.store, self.digest, self.head = store, digest, head
        self.kind = str(head["kind"])
        self.chars = int(head["chars"])

    def pieces(self) -> Iterator[str]:
        """The parts' texts, read from the store one at a time."""
        return iter_parts(self.store, self.digest, self.head)

    def __repr__(self) -> str:
        return f"StoredPayload({self.digest[:19]}, {self.kind}, {self.head['parts']} parts)"


def _key(i: int) -> str:
    return f"{i:06d}"


def _slices(text: str) -> Iterator[str]:
    for start in range(0, len(text), PART_CHARS):
        yield text[start : start + PART_CHARS]
    if not text:
        yield ""


def _json_slices(value: Any) -> Iterator[str]:
    batch: list[str] = []
    size = 0
    for chunk in json.JSONEncoder(ensure_ascii=False).iterencode(value):
        batch.append(chunk)
        size += len(chunk)
        if size >= PART_CHARS:
            yield "".join(batch)
            batch, size = [], 0
    if batch:
        yield "".join(batch)
