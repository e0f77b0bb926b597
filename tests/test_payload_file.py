"""A run's input read by reference never sits whole in the host (issue 13, item 1): a
``context_file`` is streamed into the store in slices (hashed and described on a first pass,
written on a second), a ``context_ref`` is described from its head. Real graph runs with the
real ``process`` sandbox and a SQLite store; the host peak measured with ``tracemalloc``."""

from __future__ import annotations

import gc
import hashlib
import os
import sqlite3
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.store.sqlite import SqliteStore

from rlm_graph import (
    build_graph,
    close_runs,
    context_file,
    payload_file,
    payload_parts,
    payload_store,
)
from rlm_graph.describe import describe_payload, info_of
from rlm_graph.inputs import InputError
from rlm_graph.payload_file import FileChanged
from rlm_graph.payload_store import NAMESPACE, Payloads, content_hash
from rlm_graph.sandbox.payload import canonical_kind
from tests.fakes import FakeChatModel, code, final, text_of, turn

SIZE = 64 << 20
#: The sandbox proves it saw the whole text: its length, its sha256 and its last characters.
PROOF = (
    "import hashlib\n"
    "final_answer(f'{len(context)} {hashlib.sha256(context.encode()).hexdigest()} "
    "{context[-4:]!r}')"
)


def _store(path: Path) -> SqliteStore:
    store = SqliteStore(sqlite3.connect(path, check_same_thread=False, isolation_level=None))
    store.setup()
    return store


def _graph(db: Path, model: FakeChatModel, **settings: Any) -> Any:
    saver = SqliteSaver(sqlite3.connect(db, check_same_thread=False))
    return build_graph(model=model, checkpointer=saver, **settings)


def _big_file(path: Path) -> str:
    """SIZE bytes of lines ending in latin-1 characters (two bytes each in UTF-8), written 1 MiB
    at a time; returns what :data:`PROOF` must print for it."""
    line = b"line of text " * 80 + b"\n"
    block = line * ((1 << 20) // len(line))
    with path.open("wb") as f:
        while f.tell() + len(block) < SIZE:
            f.write(block)
        f.write(b"y" * (SIZE - f.tell() - 4) + "\xe9\xe8".encode())
    data = path.read_bytes()
    text = data.decode()
    return f"{len(text)} {hashlib.sha256(data).hexdigest()} {text[-4:]!r}"


def _peak(call: Callable[[], Any]) -> tuple[Any, int]:
    gc.collect()
    tracemalloc.start()
    try:
        return call(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _parts(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        like = ".".join(payload_parts.PARTS) + ".%"
        row = conn.execute("SELECT COUNT(*) FROM store WHERE prefix LIKE ?", (like,)).fetchone()
        return int(row[0])
    finally:
        conn.close()


def test_a_context_file_run_streams_the_file_into_the_store_and_the_sandbox(
    tmp_path: Path,
) -> None:
    path = tmp_path / "big.txt"
    expected = _big_file(path)
    db = tmp_path / "t.db"
    graph = _graph(db, FakeChatModel(respond=lambda m: code(PROOF)))
    config = {"configurable": {"thread_id": "t"}}
    inp = {"query": "prove it", "context_file": str(path)}
    out, peak = _peak(lambda: graph.invoke(inp, config))
    assert out["answer"] == expected
    # A few parts' transient copies (the store's decode of one part), never the file.
    print(f"host peak {peak / 2**20:.1f} MiB")
    assert peak < SIZE // 3, peak
    assert _parts(db) >= SIZE // payload_parts.PART_CHARS  # in parts of about 1 MB


def test_a_context_ref_run_reads_only_the_head_and_streams_the_parts(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    graph = _graph(db, FakeChatModel(respond=lambda m: code(PROOF)))
    text = "0123456789abcdef" * (SIZE // 16 - 1) + "tail\u4e2d\u6587!"  # ucs2
    ref = Payloads(lambda: _store(db)).put(text)
    expected = f"{len(text)} {hashlib.sha256(text.encode()).hexdigest()} {text[-4:]!r}"
    del text
    config = {"configurable": {"thread_id": "t"}}
    out, peak = _peak(lambda: graph.invoke({"query": "prove it", "context_ref": ref}, config))
    assert out["answer"] == expected
    print(f"host peak {peak / 2**20:.1f} MiB")
    assert peak < SIZE // 3, peak


_TRICKY = (
    "caf\xe9 \u4e2d\u6587 \U0001f600 end\r\nnext\rline\n".encode() * 3
    + b"bad \xff\xfe and cut \xe4\xb8 and \xf0\x9f\x98 stray \x80\xbf nul \x00 done"
)


@pytest.mark.parametrize("slice_bytes", [1, 2, 3, 5, 7, 64])
def test_a_file_and_the_same_text_by_value_are_one_stored_payload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slice_bytes: int
) -> None:
    monkeypatch.setattr(context_file, "SLICE_BYTES", slice_bytes)  # slices cut everywhere
    path = tmp_path / "in.txt"
    path.write_bytes(_TRICKY)
    text = _TRICKY.decode("utf-8", "replace")  # CRLF and lone CR kept as they are
    db = tmp_path / "s.db"
    payloads = Payloads(lambda: _store(db))
    given = payloads.put_file(str(path))
    assert given.ref == {"hash": content_hash(text), "type": "str", "chars": len(text)}
    assert given.info == info_of(text)
    assert payloads.get(given.ref) == text
    assert given.ref == payloads.put(text)  # by value: the same payload, not stored again
    store = _store(db)
    assert len(store.search(NAMESPACE, limit=10)) == 1
    head = store.get(NAMESPACE, given.ref["hash"])
    assert head is not None and head.value["kind"] == canonical_kind(text) == "ucs4"
    assert context_file.read_context(str(path), decode_errors="replace") == text


def test_the_kind_is_the_widest_slice_s_wherever_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(context_file, "SLICE_BYTES", 4)
    path = tmp_path / "in.txt"
    text = "ab\xe9" * 3 + "\U0001f600" + "cd" * 5  # ucs4 in one middle slice only
    path.write_text(text, encoding="utf-8")
    payloads = Payloads(lambda: _store(tmp_path / "s.db"))
    given = payloads.put_file(str(path))
    source = payloads.source(given.ref)
    assert source.kind == "ucs4" and "".join(source.pieces()) == text


def test_a_bad_file_is_a_one_line_input_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine " * 1000 + b"\xe9 oops")
    graph = _graph(tmp_path / "t.db", FakeChatModel(respond=lambda m: final("x")))
    config = {"configurable": {"thread_id": "t"}}
    with pytest.raises(InputError, match="context file is empty"):
        graph.invoke({"query": "q", "context_file": str(empty)}, config)
    with pytest.raises(InputError, match="not found"):
        graph.invoke({"query": "q", "context_file": str(tmp_path / "nope.txt")}, config)
    # The CLI's strict check and the run's reading agree: strict reaches the run.
    strict = {"query": "q", "context_file": str(bad), "decode_errors": "strict"}
    with pytest.raises(InputError, match="not UTF-8 text \\(byte 0xe9 at offset 5000\\)"):
        graph.invoke(strict, {"configurable": {"thread_id": "u"}})
    replaced = graph.invoke(
        {"query": "q", "context_file": str(bad)}, {"configurable": {"thread_id": "v"}}
    )
    assert replaced["answer"] == "x"


def _changing(monkeypatch: pytest.MonkeyPatch, change: Callable[[], None]) -> list[int]:
    """Make ``change`` happen between the two passes; returns a list that counts the parts
    the second pass got to write."""
    scan = payload_file.scan_file
    written: list[int] = []

    def scan_then_change(*args: Any) -> Any:
        result = scan(*args)
        change()
        return result

    original = payload_parts.PutOp

    def counting(*args: Any, **kwargs: Any) -> Any:
        written.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(payload_store, "scan_file", scan_then_change)
    monkeypatch.setattr(payload_parts, "PutOp", counting)
    return written


def test_a_file_that_grows_between_the_passes_fails_before_any_part_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "in.txt"
    path.write_text("first version\n" * 100)

    def grow() -> None:
        with path.open("a") as f:
            f.write("more\n")

    written = _changing(monkeypatch, grow)
    db = tmp_path / "s.db"
    with pytest.raises(FileChanged, match="changed while it was being read"):
        Payloads(lambda: _store(db)).put_file(str(path))
    assert written == []  # the size told before the second pass read anything
    assert _store(db).search(NAMESPACE) == [] and _parts(db) == 0


def test_a_file_rewritten_in_place_is_caught_by_the_second_pass_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(context_file, "SLICE_BYTES", 100)
    monkeypatch.setattr(payload_parts, "PUTS_PER_BATCH", 2)  # parts reach the store first
    path = tmp_path / "in.txt"
    path.write_text("a" * 2000)
    stat = path.stat()

    def rewrite() -> None:  # same size, same mtime, same inode: only the text says
        with path.open("r+") as f:
            f.write("b" * 2000)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    written = _changing(monkeypatch, rewrite)
    db = tmp_path / "s.db"
    with pytest.raises(FileChanged, match="changed while it was being read"):
        Payloads(lambda: _store(db)).put_file(str(path))
    assert len(written) == 20  # the second pass wrote its parts, then found the mismatch
    assert _store(db).search(NAMESPACE) == [] and _parts(db) == 0  # and deleted them


def _first_prompt(model: FakeChatModel) -> str:
    return text_of(model.prompts[0][1])


def _prompt_model() -> FakeChatModel:
    def respond(messages: list[BaseMessage]) -> str:
        return code("print(len(context))") if turn(messages) == 0 else final("done")

    return FakeChatModel(respond=respond)


@pytest.mark.parametrize("saver", ["sqlite", "memory", "none"])
def test_the_model_sees_the_same_description_by_value_by_file_and_by_ref(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, saver: str
) -> None:
    monkeypatch.setattr(context_file, "SLICE_BYTES", 7)  # the file described slice by slice
    text = "header line\r\n" + "".join(f"row {i}: caf\xe9 \u4e2d\n" for i in range(2000))
    path = tmp_path / "in.txt"
    path.write_bytes(text.encode())
    db = tmp_path / "t.db"
    prompts = []
    for n, inp in enumerate(
        ({"context": text}, {"context_file": str(path)}, {"context_ref": None})
    ):
        model = _prompt_model()
        checkpointer = {"sqlite": lambda: SqliteSaver(sqlite3.connect(db, check_same_thread=False)),
                        "memory": InMemorySaver, "none": lambda: None}[saver]()  # fmt: skip
        graph = build_graph(model=model, checkpointer=checkpointer)
        if "context_ref" in inp:
            if saver != "sqlite":
                continue  # a reference needs the store that holds it
            inp = {"context_ref": Payloads(lambda: _store(db)).put(text)}
        graph.invoke({"query": "How long?", **inp}, {"configurable": {"thread_id": f"t{n}"}})
        close_runs(graph)
        prompts.append(_first_prompt(model))
        assert f"{len(text)}" in text_of(model.prompts[1][-1])  # the sandbox saw it all
    assert all(p == prompts[0] for p in prompts), prompts
    assert describe_payload(text) in prompts[0]


def test_a_head_from_before_descriptions_is_described_from_its_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(payload_parts, "PART_CHARS", 7)
    payloads = Payloads(lambda: _store(tmp_path / "s.db"))
    for value in ("many\nlines\n" * 50 + "\xe9", ["a", "b\xe9", {"k": 1}] * 30, {"x": [1, 2]}):
        ref = payloads.put(value)
        store = _store(tmp_path / "s.db")
        item = store.get(NAMESPACE, ref["hash"])
        assert item is not None
        old = {k: v for k, v in item.value.items() if k != "info"}
        store.put(NAMESPACE, ref["hash"], old, index=False)
        assert payloads.info(ref) == info_of(value)


def test_without_a_store_the_file_is_read_once_into_one_str(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    text = "x" * (8 << 20) + "\n"
    path.write_text(text)
    graph = build_graph(model=_prompt_model())
    payloads = Payloads(lambda: None)
    given, peak = _peak(lambda: payloads.put_file(str(path)))
    assert given.load() == text and given.info == info_of(text)
    assert len(text) < peak < 1.3 * len(text)  # the str, and no second copy
    out = graph.invoke({"query": "How long?", "context_file": str(path)})
    assert out["answer"] == "done"
