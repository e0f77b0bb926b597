"""A stored payload as a small head item plus parts of a few MB, so no step holds it twice.

Writing encodes one part at a time (the store's JSON of one part, not of the whole payload);
reading for the sandbox (:class:`StoredPayload`) streams the parts into the zygote one by one,
so the host holds one part, never the payload. The parts of one write are keyed by a fresh
generation id named in the head: a collector deleting an unreferenced payload's parts and a run
storing the same payload again meanwhile never touch each other's parts.

Layout in any ``BaseStore``: the head at ``NAMESPACE, <hash>`` (type, kind, chars, size, parts,
generation, and ``info``: the payload's description for the prompt, a :class:`PayloadInfo`);
part ``i`` at ``PARTS + (<hash>, <generation>)``, key ``%06d`` of ``i``, value ``{"text": ...}``
(the characters of a ``str``, or a slice of a JSON value's JSON text). Parts need not be the
same size: a file streamed into the store (:mod:`rlm_graph.payload_file`) is cut by bytes.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from langgraph.store.base import BaseStore, PutOp

from rlm_graph.describe import PayloadInfo, info_of
from rlm_graph.sandbox.payload import PayloadStream, canonical_kind

#: Namespace prefix of the parts: ``PARTS + (hash, generation)``.
PARTS = ("rlm_graph", "payload_parts")
#: Characters per part. The store decodes each row with orjson, whose transient buffers are
#: about 14x the row (measured with tracemalloc): 1M characters keeps that near 15 MB.
PART_CHARS = 1 << 20
#: Parts written per store call (one transaction each in SQLite and Postgres), while they hold
#: fewer than BATCH_CHARS characters together. The SQLite store's orjson encoding reserves
#: about 16x a part's UTF-8 size for as long as its batch is pending (measured with
#: tracemalloc: 8 ASCII parts of 1M characters in one call peaked at 127 MB, one at 16 MB), so
#: a part at least half full goes alone (about 10% slower to write than 8 at a time) and only
#: small ones are grouped. (A file's parts are cut at 1 MiB of UTF-8, so fewer characters.)
PUTS_PER_BATCH = 8
BATCH_CHARS = 1 << 18


class PartMissing(LookupError):
    """A part named by a payload's head is not in the store (deleted meanwhile)."""


def write_parts(store: BaseStore, digest: str, value: Any, type_name: str, size: int) -> dict:
    """Store ``value``'s parts under a new generation; returns the head to store last (a head
    in the store means every part it names is there)."""
    if isinstance(value, str):
        kind, chars, texts = canonical_kind(value), len(value), _slices(value)
    else:
        kind, chars, texts = "json", 0, _json_slices(value)
    generation, count = write_texts(store, digest, texts)
    return make_head(type_name, kind, chars, size, (generation, count), info_of(value))


def write_texts(store: BaseStore, digest: str, texts: Iterable[str]) -> tuple[str, int]:
    """Store ``texts`` in order as the parts of a new generation of ``digest``, each read from
    ``texts`` when its turn comes; returns (generation, part count). If ``texts`` or the store
    fails midway, the parts written so far are deleted (best effort) before the error goes on:
    no head names them, so they would only take room."""
    generation = uuid.uuid4().hex[:12]
    namespace, count, batch, pending = (*PARTS, digest, generation), 0, [], 0
    try:
        for text in texts:
            batch.append(PutOp(namespace, _key(count), {"text": text}, index=False))
            count, pending = count + 1, pending + len(text)
            if len(batch) == PUTS_PER_BATCH or pending >= BATCH_CHARS:
                store.batch(batch)  # one transaction per batch, not per part
                batch, pending = [], 0
        if batch:
            store.batch(batch)
    except BaseException:
        with contextlib.suppress(Exception):
            delete_parts(store, digest, {"generation": generation, "parts": count})
        raise
    return generation, count


def make_head(
    type_name: str, kind: str, chars: int, size: int, written: tuple[str, int], info: PayloadInfo
) -> dict:
    """The head of a payload whose parts were written as ``written`` (generation, count):
    ``info`` describes it for the prompt, so a run given it by reference never reads it."""
    generation, count = written
    return {
        "type": type_name,
        "layout": "parts",
        "kind": kind,
        "chars": chars,
        "size": size,
        "parts": count,
        "generation": generation,
        "info": info.as_dict(),
    }


def info_in(head: dict) -> PayloadInfo | None:
    """The description a head keeps (None for a head written before heads kept one)."""
    info = head.get("info")
    return PayloadInfo.from_dict(info) if isinstance(info, dict) else None


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
