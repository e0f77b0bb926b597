"""A stored payload reaches the sandbox part by part (issue 13, item 1): every kind of ``str``
and JSON arrive intact across part boundaries, the host never holds the whole payload while a
zygote loads it, a bad stream fails the start cleanly, and deleting a thread deletes the parts.
Real sandboxes (subprocesses), a real SQLite store."""

from __future__ import annotations

import gc
import sqlite3
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.store.sqlite import SqliteStore

from rlm_graph import build_graph, payload_parts
from rlm_graph.payload_gc import delete_threads
from rlm_graph.payload_parts import PARTS, StoredPayload
from rlm_graph.payload_store import Payloads
from rlm_graph.sandbox import PayloadError, Sandbox
from rlm_graph.sandbox.payload import PayloadStream
from tests.fakes import FakeChatModel, code

_SAMPLES: list[Any] = [
    "plain ascii text, " * 5,
    "caf\xe9 cr\xe8me " * 4,  # latin-1
    "\u4e2d\u6587 two-byte text " * 3,  # ucs2
    "emoji \U0001f600 and \xe9 " * 3,  # ucs4
    "",
    ["a", "b\xe9", {"k": [1, 2.5, None, True]}] * 4,
    {"users": {"u1": ["x" * 10, "y"]}, "n": 3},
]


def _store(path: Path) -> SqliteStore:
    store = SqliteStore(sqlite3.connect(path, check_same_thread=False, isolation_level=None))
    store.setup()
    return store


def _show(sandbox: Sandbox) -> str:
    result = sandbox.run("import sys\nprint(ascii(context), sys.getsizeof(context))")
    assert result.error is None, result.error
    return result.output.strip()


@pytest.mark.parametrize("value", _SAMPLES, ids=range(len(_SAMPLES)))
def test_every_kind_arrives_intact_across_part_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: Any
) -> None:
    monkeypatch.setattr(payload_parts, "PART_CHARS", 7)  # many parts, cut anywhere
    payloads = Payloads(lambda: _store(tmp_path / "s.db"))
    ref = payloads.put(value)
    source = payloads.source(ref)
    assert isinstance(source, StoredPayload)
    assert payloads.get(ref) == value
    with Sandbox(source, "q") as streamed, Sandbox(value, "q") as direct:
        # Same characters and same size: the zygote built the canonical kind of str.
        assert _show(streamed) == _show(direct)


def test_the_host_never_holds_the_payload_while_the_zygote_loads_it(tmp_path: Path) -> None:
    payloads = Payloads(lambda: _store(tmp_path / "s.db"))
    size = 64 << 20
    ref = payloads.put("x" * (size - 1) + "\xe9")  # latin-1: one byte per character
    gc.collect()

    def peak(load: Callable[[Any], Any]) -> int:
        tracemalloc.start()
        try:
            with Sandbox(load(ref), "q") as sandbox:
                out = sandbox.run("print(len(context), context[-1] == '\\xe9')").output
            assert out.split() == [str(size), "True"]
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    streamed = peak(payloads.source)
    # A few parts' worth of transient copies at most, against the whole payload read first.
    assert streamed < size // 3, streamed
    assert peak(payloads.get) > size  # the measurement sees a whole copy when there is one


class _Stream(PayloadStream):
    def __init__(self, kind: str, chars: int, texts: list[str]) -> None:
        self.kind, self.chars, self.texts = kind, chars, texts

    def pieces(self) -> Iterator[str]:
        return iter(self.texts)


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (_Stream("ascii", 10, ["abc"]), "has 3 of its 10 characters"),
        (_Stream("ascii", 2, ["abc"]), "longer than its 2 characters"),
        (_Stream("latin1", 3, ["a\u4e2db"]), "cannot store"),
        (_Stream("ucs2", 2, ["a\U0001f600"]), "cannot store"),
    ],
)
def test_a_stream_that_does_not_match_its_head_fails_the_start(
    stream: _Stream, message: str
) -> None:
    sandbox = Sandbox(stream, "q")
    try:
        with pytest.raises(PayloadError, match=message):
            sandbox.start()
        assert sandbox._res.zygote is None  # stopped, not left half-loaded
    finally:
        sandbox.close()


def test_a_graph_run_streams_from_its_store_and_deleting_the_thread_deletes_the_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def whole(self: Payloads, ref: Any) -> Any:
        raise AssertionError("the run read the stored payload whole")

    monkeypatch.setattr(Payloads, "get", whole)
    db = tmp_path / "t.db"
    model = FakeChatModel(respond=lambda m: code("final_answer(f'{len(context)} {context[-3:]}')"))
    graph = build_graph(
        model=model, checkpointer=SqliteSaver(sqlite3.connect(db, check_same_thread=False))
    )
    text = "0123456789" * 1_000_000 + "end"
    config = {"configurable": {"thread_id": "t"}}
    assert graph.invoke({"query": "len?", "context": text}, config)["answer"] == f"{len(text)} end"
    conn = sqlite3.connect(db)
    parts = conn.execute(
        "SELECT COUNT(*) FROM store WHERE prefix LIKE ?", (".".join(PARTS) + ".%",)
    )
    assert parts.fetchone()[0] == -(-len(text) // payload_parts.PART_CHARS) > 1
    delete_threads(graph, ["t"])
    left = conn.execute("SELECT COUNT(*) FROM store WHERE prefix LIKE 'rlm_graph.%'").fetchone()
    assert left[0] == 0
    conn.close()


def test_the_content_hash_of_a_text_is_the_sha256_of_its_utf8_in_one_piece(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import hashlib

    from rlm_graph import payload_store

    monkeypatch.setattr(payload_store, "_HASH_SLICE", 3)  # slices cut through every kind
    text = "ab\xe9\u4e2d\U0001f600" * 7 + "end"
    whole = "sha256:" + hashlib.sha256(b"s" + text.encode("utf-8")).hexdigest()
    assert payload_store.content_hash(text) == whole
    assert payload_store.content_hash("") == "sha256:" + hashlib.sha256(b"s").hexdigest()
